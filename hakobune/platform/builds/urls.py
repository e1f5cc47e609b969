from django.urls import path

from . import views

app_name = "builds"

build = "t/<slug:team>/<slug:service>/builds/<int:number>/"

urlpatterns = [
    path(build, views.build_detail, name="detail"),
    path(f"{build}log/", views.build_log, name="log"),
    path(f"{build}status/", views.build_status, name="status"),
    path(f"{build}source/", views.build_source, name="source"),
    path(f"{build}Dockerfile", views.build_dockerfile, name="dockerfile"),
    path(f"{build}redeploy/", views.build_redeploy, name="redeploy"),
    path(f"{build}cancel/", views.build_cancel, name="cancel"),
    path("stacks/", views.stacks_page, name="stacks"),
]
