from django.shortcuts import redirect
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin


class OneTimePasswordMiddleware(MiddlewareMixin):
    """Sends a person who logged in with a one-time password to choose their own
    before anything else. Sync and async alike (MiddlewareMixin), so that an
    async view (the waker) is reached without a thread held for it."""

    def process_request(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            profile = getattr(user, "profile", None)
            allowed = {reverse("accounts:password_change"), reverse("accounts:logout")}
            if profile and profile.must_change_password and request.path not in allowed:
                return redirect("accounts:password_change")
        return None
