"""Each app's pages under its own namespace (services:, builds:,
observability:, accounts:, governance:, notifications:, addons:, volumes:, api:), at the paths recorded in
tests/fixtures/contract/url_paths.txt."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("hakobune.platform.services.urls")),
    path("", include("hakobune.platform.builds.urls")),
    path("", include("hakobune.platform.observability.urls")),
    path("", include("hakobune.platform.accounts.urls")),
    path("", include("hakobune.platform.governance.urls")),
    path("", include("hakobune.platform.notifications.urls")),
    path("", include("hakobune.platform.addons.urls")),
    path("", include("hakobune.platform.volumes.urls")),
    path("api/v1/", include("hakobune.platform.api.urls")),
    path("admin/", admin.site.urls),
    # The header's language switcher posts here (Django's set_language).
    path("i18n/", include("django.conf.urls.i18n")),
]
