from django.urls import path

from . import views

app_name = "governance"

urlpatterns = [
    path("quotas/", views.governance_page, name="quotas"),
    path("quotas/t/<slug:team>/", views.team_policy, name="team_policy"),
    path("quotas/t/<slug:team>/external-addons/", views.team_external_addon, name="team_external_addon"),
    path("quotas/t/<slug:team>/network/grow/", views.grow_network, name="grow_network"),
    path("disk/", views.disk_page, name="disk"),
    path("disk/prune/", views.prune_now, name="prune"),
    path("quotas/review/<int:service_id>/<str:decision>/", views.review_service, name="review"),
]
