from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from .forms import NewTeamForm
from .models import Profile
from .services import create_team


@login_required
def team_new(request):
    form = NewTeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = create_team(name=form.cleaned_data["name"], owner=request.user)
        except ValidationError:
            form.add_error("name", "That team name is taken. Choose another.")
        else:
            messages.success(request, f"Team {team.name} created. You are its owner.")
            return redirect("dashboard")
    return render(request, "accounts/team_new.html", {"form": form})


@login_required
def password_change(request):
    profile = Profile.objects.filter(user=request.user).first()
    first_time = bool(profile and profile.must_change_password)
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        update_session_auth_hash(request, user)
        Profile.objects.filter(user=user).update(must_change_password=False)
        messages.success(request, "Your password is changed.")
        return redirect("dashboard")
    return render(request, "accounts/password_change.html", {"form": form, "first_time": first_time})
