from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from .forms import ApiTokenForm, NewTeamForm
from .models import Profile
from .networks import NoRoomForTeamNetwork
from .services import TeamLimitReached, create_team, team_limit_refusal
from .tokens import active_api_tokens, create_api_token, revoke_api_token


@login_required
def team_new(request):
    form = NewTeamForm(request.POST or None)
    refusal = team_limit_refusal(request.user) if request.method == "GET" else None
    if request.method == "POST" and form.is_valid():
        try:
            team = create_team(name=form.cleaned_data["name"], owner=request.user)
        except TeamLimitReached as exc:
            form.add_error(None, str(exc))
        except NoRoomForTeamNetwork as exc:
            form.add_error(None, exc.in_words())
        except ValidationError:
            form.add_error("name", _("That team name is taken. Choose another."))
        else:
            messages.success(request, _("Team %(team)s created. You are its owner.") % {"team": team.name})
            return redirect("services:dashboard")
    return render(request, "accounts/team_new.html", {"form": form, "refusal": refusal})


@login_required
def password_change(request):
    profile = Profile.objects.filter(user=request.user).first()
    first_time = bool(profile and profile.must_change_password)
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        tokens = active_api_tokens(request.user).count()
        # Saving the new password revokes the person's API tokens (settings.AUTH_PASSWORD_VALIDATORS).
        user = form.save()
        update_session_auth_hash(request, user)
        Profile.objects.filter(user=user).update(must_change_password=False)
        revoked = ""
        if tokens:
            revoked = " " + ngettext(
                "Your API token was revoked with the old password: create new ones under API tokens.",
                "Your %(count)s API tokens were revoked with the old password: create new ones under API tokens.",
                tokens,
            ) % {"count": tokens}
        messages.success(request, _("Your password is changed.") + revoked)
        return redirect("services:dashboard")
    return render(request, "accounts/password_change.html", {"form": form, "first_time": first_time})


@login_required
def api_tokens(request):
    """The person's API tokens: a new one is shown once, right after it is made."""
    form = ApiTokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        record, new_token = create_api_token(
            user=request.user, name=form.cleaned_data["name"], expires_in_days=form.cleaned_data["expires_in_days"]
        )
        form = ApiTokenForm()
    tokens = request.user.api_tokens.all()
    return render(
        request,
        "accounts/api_tokens.html",
        {"form": form, "tokens": tokens, "new_token": new_token, "api_url": request.build_absolute_uri("/")},
    )


@login_required
@require_POST
def api_token_revoke(request, token_id):
    token = get_object_or_404(request.user.api_tokens, id=token_id)
    revoke_api_token(token=token)
    messages.success(request, _("The token %(name)s is revoked; it no longer works.") % {"name": token.name})
    return redirect("accounts:api_tokens")
