from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import addon_views, backup_views, views, volume_views

app_name = "api"

team = "teams/<slug:team>"
service = f"{team}/services/<slug:service>"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", authentication_classes=[], permission_classes=[]),
         name="docs"),
    path("auth/token", views.TokenView.as_view(), name="token"),
    path("me/", views.MeView.as_view(), name="me"),
    path("teams/", views.TeamsView.as_view(), name="teams"),
    path(f"{team}/members/", views.MembersView.as_view(), name="members"),
    path(f"{team}/members/<str:username>/", views.MemberView.as_view(), name="member"),
    path(f"{team}/events/", views.TeamEventsView.as_view(), name="team_events"),
    path(f"{team}/notifications/targets/", views.NotificationTargetsView.as_view(), name="notification_targets"),
    path(f"{team}/notifications/targets/<int:target_id>/", views.NotificationTargetView.as_view(),
         name="notification_target"),
    path(f"{team}/notifications/targets/<int:target_id>/test/", views.NotificationTargetTestView.as_view(),
         name="notification_target_test"),
    path(f"{team}/notifications/deliveries/", views.NotificationDeliveriesView.as_view(),
         name="notification_deliveries"),
    path(f"{team}/alerts/", views.AlertRulesView.as_view(), name="alert_rules"),
    path(f"{team}/alerts/<int:rules_id>/", views.AlertRuleView.as_view(), name="alert_rule"),
    path(f"{team}/addons/", addon_views.AddOnsView.as_view(), name="addons"),
    path(f"{team}/addons/<slug:addon>/", addon_views.AddOnView.as_view(), name="addon"),
    path(f"{team}/addons/<slug:addon>/backups/", backup_views.BackupsView.as_view(), name="addon_backups"),
    path(f"{team}/addons/<slug:addon>/backups/schedule/", backup_views.BackupScheduleView.as_view(),
         name="addon_backup_schedule"),
    path(f"{team}/addons/<slug:addon>/backups/<int:backup_id>/", backup_views.BackupView.as_view(),
         name="addon_backup"),
    path(f"{team}/addons/<slug:addon>/backups/<int:backup_id>/download/", backup_views.BackupDownloadView.as_view(),
         name="addon_backup_download"),
    path(f"{team}/addons/<slug:addon>/backups/<int:backup_id>/restore/", backup_views.BackupRestoreView.as_view(),
         name="addon_backup_restore"),
    path(f"{team}/volumes/", volume_views.VolumesView.as_view(), name="volumes"),
    path(f"{team}/volumes/<slug:volume>/", volume_views.VolumeView.as_view(), name="volume"),
    path(f"{team}/disk/", volume_views.DiskView.as_view(), name="disk"),
    path(f"{team}/log-drain/", views.LogDrainView.as_view(), name="log_drain"),
    path(f"{team}/services/", views.ServicesView.as_view(), name="services"),
    path(f"{service}/", views.ServiceView.as_view(), name="service"),
    path(f"{service}/deploys/", views.DeploysView.as_view(), name="deploys"),
    path(f"{service}/builds/<int:number>/cancel/", views.BuildCancelView.as_view(), name="build_cancel"),
    path(f"{service}/releases/", views.ReleasesView.as_view(), name="releases"),
    path(f"{service}/rollback/", views.RollbackView.as_view(), name="rollback"),
    path(f"{service}/traffic/", views.TrafficView.as_view(), name="traffic"),
    path(f"{service}/processes/", views.ProcessesView.as_view(), name="processes"),
    path(f"{service}/jobs/", views.JobsView.as_view(), name="jobs"),
    path(f"{service}/runs/", views.RunsView.as_view(), name="runs"),
    path(f"{service}/env/", views.EnvView.as_view(), name="env"),
    path(f"{service}/addons/", addon_views.ServiceAddOnsView.as_view(), name="service_addons"),
    path(f"{service}/addons/<slug:addon>/", addon_views.ServiceAddOnView.as_view(), name="service_addon"),
    path(f"{service}/volumes/", volume_views.ServiceVolumesView.as_view(), name="service_volumes"),
    path(f"{service}/volumes/<slug:volume>/", volume_views.ServiceVolumeView.as_view(), name="service_volume"),
    path(f"{service}/logs", views.LogsView.as_view(), name="logs"),
    path(f"{service}/metrics", views.MetricsView.as_view(), name="metrics"),
    path(f"{service}/under-the-hood/", views.UnderTheHoodView.as_view(), name="under_the_hood"),
    path(f"{service}/events/", views.ServiceEventsView.as_view(), name="service_events"),
    path("builds/<int:build_id>/", views.BuildView.as_view(), name="build"),
    path("builds/<int:build_id>/log", views.BuildLogView.as_view(), name="build_log"),
    # Any character, newlines too: an unknown path always gets the JSON 404.
    re_path(r"^(?P<rest>[\s\S]*)$", views.NoSuchEndpoint.as_view()),
]
