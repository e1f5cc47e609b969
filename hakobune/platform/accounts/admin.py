from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy, ngettext

from hakobune.platform.observability.events import record_event

from .models import Membership, Team, TeamNetwork


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at", "deleting_since"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    actions = ["grow_network"]

    @admin.action(description=gettext_lazy("Move to a larger network block (services stop for a few seconds)"))
    def grow_network(self, request, queryset):
        """Moves each team whose quota outgrew its block (services/team_networks.py, in a worker)."""
        from hakobune.platform.queue import enqueue_on_commit

        from . import networks

        for team in queryset:
            why = networks.grow_refusal(team)
            if why:
                messages.warning(request, why)
                continue
            enqueue_on_commit("grow_team_network", team.id, request.user.id)
            messages.info(request, gettext("Moving team %(team)s to a larger network block: its services answer "
                                           "again within a minute.") % {"team": team.name})

    # Deleting a team is services.delete_team: its services are stopped and
    # removed by a worker (their releases would otherwise refuse the delete:
    # a release protects its build), then the team and its network go. The
    # confirmation page says so, service by service.

    def get_deleted_objects(self, objs, request):
        from hakobune.platform.services.models import DesiredState

        listed = []
        for team in objs:
            services = [
                gettext("Service %(team)s/%(service)s: its instances stopped and removed, with its %(releases)s and "
                        "%(builds)s, logs, metrics and images") % {
                    "team": team.name, "service": service.name,
                    "releases": ngettext("%(count)s release", "%(count)s releases", releases) % {"count": releases},
                    "builds": ngettext("%(count)s build", "%(count)s builds", builds) % {"count": builds},
                }
                for service in team.services.exclude(desired_state=DesiredState.DELETED).order_by("name")
                for releases, builds in [(service.releases.count(), service.builds.count())]
            ]
            network = TeamNetwork.objects.filter(team=team, moving=False).first()
            extra = [gettext("Its network (%(subnet)s): removed, its address block free for another team")
                     % {"subnet": network.subnet}] if network else []
            members = team.memberships.count()
            listed += [gettext("Team %(team)s") % {"team": team.name}, [
                *services, *extra,
                ngettext("Its %(count)s membership, quota and settings", "Its %(count)s memberships, quota and settings",
                         members) % {"count": members},
            ]]
        return listed, {Team._meta.verbose_name_plural: len(objs)}, set(), []

    def delete_model(self, request, obj):
        from hakobune.platform.services.services import delete_team

        count = delete_team(team=obj, deleted_by=request.user)
        messages.info(request, ngettext(
            "Team %(team)s's %(count)s service is being stopped and removed; the team and its network go once it is "
            "(a minute at most when the workers run).",
            "Team %(team)s's %(count)s services are being stopped and removed; the team and its network go once they "
            "are (a minute at most when the workers run).", count) % {"team": obj.name, "count": count})

    def response_delete(self, request, obj_display, obj_id):
        # Not "deleted successfully": the worker has yet to do it (delete_model says so).
        return HttpResponseRedirect(reverse("admin:accounts_team_changelist"))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            record_event("team.created", team=obj, actor=request.user)

    def save_formset(self, request, form, formset, change):
        """Memberships changed here are events of the team, as in the API."""
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        before = {m.id: m.role for m in Membership.objects.filter(team=form.instance)} if change else {}
        super().save_formset(request, form, formset, change)
        for membership in formset.new_objects:
            record_event("member.added", team=form.instance, actor=request.user, user=membership.user.get_username(),
                         role=membership.role)
        for membership, _fields in formset.changed_objects:
            if before.get(membership.id, membership.role) != membership.role:
                record_event("member.role_changed", team=form.instance, actor=request.user,
                             user=membership.user.get_username(), role=membership.role, was=before[membership.id])
        for membership in formset.deleted_objects:
            record_event("member.removed", team=form.instance, actor=request.user, user=membership.user.get_username(),
                         left=False)

    def delete_queryset(self, request, queryset):
        for team in queryset:
            self.delete_model(request, team)
