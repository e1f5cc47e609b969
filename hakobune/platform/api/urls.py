from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views

team = "teams/<slug:team>"
service = f"{team}/services/<slug:service>"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema", authentication_classes=[], permission_classes=[]),
         name="api-docs"),
    path("auth/token", views.TokenView.as_view(), name="api-token"),
    path("me/", views.MeView.as_view(), name="api-me"),
    path("teams/", views.TeamsView.as_view(), name="api-teams"),
    path(f"{team}/members/", views.MembersView.as_view(), name="api-members"),
    path(f"{team}/members/<str:username>/", views.MemberView.as_view(), name="api-member"),
    path(f"{team}/services/", views.ServicesView.as_view(), name="api-services"),
    path(f"{service}/", views.ServiceView.as_view(), name="api-service"),
    path(f"{service}/deploys/", views.DeploysView.as_view(), name="api-deploys"),
    path(f"{service}/releases/", views.ReleasesView.as_view(), name="api-releases"),
    path(f"{service}/rollback/", views.RollbackView.as_view(), name="api-rollback"),
    path(f"{service}/traffic/", views.TrafficView.as_view(), name="api-traffic"),
    path(f"{service}/env/", views.EnvView.as_view(), name="api-env"),
    path(f"{service}/logs", views.LogsView.as_view(), name="api-logs"),
    path(f"{service}/metrics", views.MetricsView.as_view(), name="api-metrics"),
    path("builds/<int:build_id>/", views.BuildView.as_view(), name="api-build"),
    path("builds/<int:build_id>/log", views.BuildLogView.as_view(), name="api-build-log"),
    # Any character, newlines too: an unknown path always gets the JSON 404.
    re_path(r"^(?P<rest>[\s\S]*)$", views.NoSuchEndpoint.as_view()),
]
