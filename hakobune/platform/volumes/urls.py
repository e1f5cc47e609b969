from django.urls import path

from . import views

app_name = "volumes"

page = "teams/<slug:team>/volumes/"

urlpatterns = [
    path(page, views.volumes_page, name="page"),
    path(f"{page}new/", views.volume_create, name="create"),
    path(f"{page}attach/", views.volume_attach, name="attach_chosen"),
    path(f"{page}<slug:volume>/attach/", views.volume_attach, name="attach"),
    path(f"{page}<slug:volume>/detach/", views.volume_detach, name="detach"),
    path(f"{page}<slug:volume>/share/", views.volume_share, name="share"),
    path(f"{page}<slug:volume>/delete/", views.volume_delete, name="delete"),
]
