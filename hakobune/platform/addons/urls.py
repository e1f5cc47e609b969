from django.urls import path

from . import views

app_name = "addons"

page = "teams/<slug:team>/addons/"

urlpatterns = [
    path(page, views.addons_page, name="page"),
    path(f"{page}new/", views.addon_create, name="create"),
    path(f"{page}<slug:addon>/attach/", views.addon_attach, name="attach"),
    path(f"{page}<slug:addon>/detach/<slug:service>/", views.addon_detach, name="detach"),
    path(f"{page}<slug:addon>/delete/", views.addon_delete, name="delete"),
]
