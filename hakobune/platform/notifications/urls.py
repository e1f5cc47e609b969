from django.urls import path

from . import views

app_name = "notifications"

page = "teams/<slug:team>/notifications/"

urlpatterns = [
    path(page, views.notifications_page, name="page"),
    path(f"{page}targets/", views.target_add, name="target_add"),
    path(f"{page}targets/<int:target_id>/remove/", views.target_remove, name="target_remove"),
    path(f"{page}targets/<int:target_id>/test/", views.target_test, name="target_test"),
    path(f"{page}rules/", views.rules_save, name="rules"),
    path(f"{page}rules/services/", views.service_rules_save, name="service_rules"),
    path(f"{page}rules/services/<slug:service>/remove/", views.service_rules_remove, name="service_rules_remove"),
]
