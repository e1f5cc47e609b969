from django.urls import path

from . import views

app_name = "observability"

service = "t/<slug:team>/<slug:service>/"

urlpatterns = [
    path(f"{service}logs/", views.runtime_logs, name="runtime_logs"),
    path(f"{service}runtime/", views.runtime_status, name="runtime_status"),
    path(f"{service}metrics/", views.service_metrics, name="metrics"),
    path(f"{service}under-the-hood/", views.under_the_hood, name="under_the_hood"),
    path(f"{service}events/", views.service_events, name="service_events"),
    path("teams/<slug:team>/audit/", views.team_events, name="team_events"),
    path("events/", views.all_events, name="all_events"),
    path("teams/<slug:team>/log-drain/", views.log_drain, name="log_drain"),
    # Prometheus's usual path, without a slash.
    path("metrics", views.platform_metrics, name="platform_metrics"),
]
