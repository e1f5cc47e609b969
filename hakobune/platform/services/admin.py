from django.contrib import admin

from .models import Release, Service, TeamCloudRunSettings


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "target", "cpu", "memory_mb", "created_at"]
    list_filter = ["target", "team"]
    search_fields = ["name", "team__name"]


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ["service", "number", "status", "image", "created_at"]
    list_filter = ["status"]


@admin.register(TeamCloudRunSettings)
class TeamCloudRunSettingsAdmin(admin.ModelAdmin):
    """Keys are set on the portal's Cloud Run page; here only who has one shows."""

    list_display = ["team", "project", "region", "service_account", "build_service_account", "credentials", "key_email",
                    "updated_at"]
    readonly_fields = ["key_email", "updated_at", "updated_by"]
    exclude = ["key_encrypted"]
