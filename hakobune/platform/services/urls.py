from django.urls import path

from . import cloud_run_views, guided_views, hooks_views, views

app_name = "services"

service = "t/<slug:team>/<slug:service>/"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("t/<slug:team>/services/new/", views.service_new, name="new"),
    path("t/<slug:team>/services/guided/", guided_views.guided_start, name="guided_start"),
    path(service, views.service_detail, name="detail"),
    path(f"{service}guided/plans/<int:check>/", guided_views.guided_plan, name="guided_plan"),
    path(f"{service}guided/plans/<int:check>/again/", guided_views.guided_recheck, name="guided_recheck"),
    path(f"{service}guided/deploys/<int:number>/", guided_views.guided_deploy, name="guided_deploy"),
    path(f"{service}deploy/", views.service_deploy, name="deploy"),
    path(f"{service}env/", views.service_env, name="env"),
    path(f"{service}scale/", views.service_scale, name="scale"),
    path(f"{service}processes/", views.service_processes, name="processes"),
    path(f"{service}settings/", views.service_settings, name="settings"),
    path(f"{service}restart/", views.service_restart, name="restart"),
    path(f"{service}domains/", views.service_domains, name="domains"),
    path(f"{service}notice/", views.service_notice, name="notice"),
    path(f"{service}sleep/", views.service_sleep_settings, name="sleep"),
    path(f"{service}delete/", views.service_delete, name="delete"),
    path(f"{service}stop/", views.service_power, {"action": "stop"}, name="stop"),
    path(f"{service}start/", views.service_power, {"action": "start"}, name="start"),
    path(f"{service}releases/<int:number>/rollback/", views.release_rollback, name="rollback"),
    path(f"{service}traffic/", views.service_traffic, name="traffic"),
    path("cloud-run/", cloud_run_views.cloud_run_settings, name="cloud_run"),
    path("cloud-run/t/<slug:team>/", cloud_run_views.cloud_run_settings, name="cloud_run_team"),
    path("hooks/git/<uuid:webhook_id>/", hooks_views.git_webhook, name="git_webhook"),
    path("_hakobune/wake/", hooks_views.wake_service, name="wake"),
    path("_hakobune/wake/<path:path>", hooks_views.wake_service, name="wake_path"),
]
