from django.urls import path

from . import views

app_name = "governance"

urlpatterns = [
    path("quotas/", views.governance_page, name="quotas"),
    path("quotas/t/<slug:team>/", views.team_policy, name="team_policy"),
    path("quotas/review/<int:service_id>/<str:decision>/", views.review_service, name="review"),
]
