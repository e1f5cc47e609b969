from django.shortcuts import redirect
from django.urls import reverse


class OneTimePasswordMiddleware:
    """Sends a person who logged in with a one-time password to choose their own
    before anything else."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            profile = getattr(user, "profile", None)
            allowed = {reverse("accounts:password_change"), reverse("accounts:logout")}
            if profile and profile.must_change_password and request.path not in allowed:
                return redirect("accounts:password_change")
        return self.get_response(request)
