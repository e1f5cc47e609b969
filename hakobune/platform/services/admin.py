from django.contrib import admin

from .models import Release, Service


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "target", "cpu", "memory_mb", "created_at"]
    list_filter = ["target", "team"]
    search_fields = ["name", "team__name"]


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ["service", "number", "status", "image", "created_at"]
    list_filter = ["status"]
