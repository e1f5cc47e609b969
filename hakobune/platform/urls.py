from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from hakobune.platform.accounts import views as accounts
from hakobune.platform.governance import views as governance
from hakobune.platform.services import views as services

urlpatterns = [
    path("", services.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/password/", accounts.password_change, name="password_change"),
    path("account/tokens/", accounts.api_tokens, name="api_tokens"),
    path("account/tokens/<int:token_id>/revoke/", accounts.api_token_revoke, name="api_token_revoke"),
    path("api/v1/", include("hakobune.platform.api.urls")),
    path("teams/new/", accounts.team_new, name="team_new"),
    path("stacks/", services.stacks_page, name="stacks"),
    path("quotas/", governance.governance_page, name="governance"),
    path("quotas/t/<slug:team>/", governance.team_policy, name="team_policy"),
    path("quotas/review/<int:service_id>/<str:decision>/", governance.review_service, name="review_service"),
    path("cloud-run/", services.cloud_run_settings, name="cloud_run"),
    path("cloud-run/t/<slug:team>/", services.cloud_run_settings, name="cloud_run_team"),
    path("t/<slug:team>/services/new/", services.service_new, name="service_new"),
    path("t/<slug:team>/<slug:service>/", services.service_detail, name="service_detail"),
    path("t/<slug:team>/<slug:service>/deploy/", services.service_deploy, name="service_deploy"),
    path("t/<slug:team>/<slug:service>/logs/", services.runtime_logs, name="runtime_logs"),
    path("t/<slug:team>/<slug:service>/runtime/", services.runtime_status, name="runtime_status"),
    path("t/<slug:team>/<slug:service>/metrics/", services.service_metrics, name="service_metrics"),
    path("t/<slug:team>/<slug:service>/env/", services.service_env, name="service_env"),
    path("t/<slug:team>/<slug:service>/scale/", services.service_scale, name="service_scale"),
    path("t/<slug:team>/<slug:service>/settings/", services.service_settings, name="service_settings"),
    path("t/<slug:team>/<slug:service>/restart/", services.service_restart, name="service_restart"),
    path("t/<slug:team>/<slug:service>/domains/", services.service_domains, name="service_domains"),
    path("t/<slug:team>/<slug:service>/sleep/", services.service_sleep_settings, name="service_sleep_settings"),
    path("t/<slug:team>/<slug:service>/delete/", services.service_delete, name="service_delete"),
    path("t/<slug:team>/<slug:service>/stop/", services.service_power, {"action": "stop"}, name="service_stop"),
    path("t/<slug:team>/<slug:service>/start/", services.service_power, {"action": "start"}, name="service_start"),
    path("t/<slug:team>/<slug:service>/releases/<int:number>/rollback/", services.release_rollback, name="release_rollback"),
    path("t/<slug:team>/<slug:service>/traffic/", services.service_traffic, name="service_traffic"),
    path("t/<slug:team>/<slug:service>/builds/<int:number>/", services.build_detail, name="build_detail"),
    path("t/<slug:team>/<slug:service>/builds/<int:number>/log/", services.build_log, name="build_log"),
    path("t/<slug:team>/<slug:service>/builds/<int:number>/status/", services.build_status, name="build_status"),
    path("t/<slug:team>/<slug:service>/builds/<int:number>/source/", services.build_source, name="build_source"),
    path("t/<slug:team>/<slug:service>/builds/<int:number>/Dockerfile", services.build_dockerfile, name="build_dockerfile"),
    path("t/<slug:team>/<slug:service>/builds/<int:number>/redeploy/", services.build_redeploy, name="build_redeploy"),
    path("hooks/git/<uuid:webhook_id>/", services.git_webhook, name="git_webhook"),
    path("_hakobune/wake/", services.wake_service, name="wake_service"),
    path("_hakobune/wake/<path:path>", services.wake_service, name="wake_service_path"),
    path("admin/", admin.site.urls),
]
