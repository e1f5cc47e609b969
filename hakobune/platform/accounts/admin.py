from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from .models import Membership, Team, TeamNetwork


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at", "deleting_since"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    # Deleting a team is services.delete_team: its services are stopped and
    # removed by a worker (their releases would otherwise refuse the delete:
    # a release protects its build), then the team and its network go. The
    # confirmation page says so, service by service.

    def get_deleted_objects(self, objs, request):
        from hakobune.platform.services.models import DesiredState

        listed = []
        for team in objs:
            services = [
                f"Service {team.name}/{service.name}: its instances stopped and removed, with its "
                f"{service.releases.count()} release(s), {service.builds.count()} build(s), logs, metrics and images"
                for service in team.services.exclude(desired_state=DesiredState.DELETED).order_by("name")
            ]
            network = TeamNetwork.objects.filter(team=team).first()
            extra = [f"Its network ({network.subnet}): removed, its address block free for another team"] if network \
                else []
            members = team.memberships.count()
            listed += [f"Team {team.name}", [*services, *extra, f"Its {members} membership(s), quota and settings"]]
        return listed, {"teams": len(objs)}, set(), []

    def delete_model(self, request, obj):
        from hakobune.platform.services.services import delete_team

        count = delete_team(team=obj, deleted_by=request.user)
        messages.info(request, f"Team {obj.name}'s {count} service(s) are being stopped and removed; the team and its "
                               "network go once they are (a minute at most when the workers run).")

    def response_delete(self, request, obj_display, obj_id):
        # Not "deleted successfully": the worker has yet to do it (delete_model says so).
        return HttpResponseRedirect(reverse("admin:accounts_team_changelist"))

    def delete_queryset(self, request, queryset):
        for team in queryset:
            self.delete_model(request, team)
