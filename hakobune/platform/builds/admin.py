from django.contrib import admin

from .models import Build


@admin.register(Build)
class BuildAdmin(admin.ModelAdmin):
    list_display = ["service", "number", "status", "image", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = ["plan", "source_digest", "failure_reason"]
