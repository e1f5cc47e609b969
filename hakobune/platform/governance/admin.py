from django.contrib import admin

from .models import ServiceReview, TeamPolicy


@admin.register(TeamPolicy)
class TeamPolicyAdmin(admin.ModelAdmin):
    list_display = ["team", "max_services", "max_cpu", "max_memory_mb", "review", "updated_at"]


@admin.register(ServiceReview)
class ServiceReviewAdmin(admin.ModelAdmin):
    list_display = ["service", "status", "requested_at", "reviewed_by", "reviewed_at"]
    list_filter = ["status"]
