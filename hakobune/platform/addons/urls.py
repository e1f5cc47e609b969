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
    path(f"{page}<slug:addon>/backups/", views.backup_create, name="backup"),
    path(f"{page}<slug:addon>/backups/schedule/", views.backup_schedule, name="backup_schedule"),
    path(f"{page}<slug:addon>/backups/<int:backup_id>/download/", views.backup_download, name="backup_download"),
    path(f"{page}<slug:addon>/backups/<int:backup_id>/restore/", views.backup_restore, name="restore"),
]
