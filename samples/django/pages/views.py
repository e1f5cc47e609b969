import os
import socket

from django.http import HttpResponse
from django.templatetags.static import static


def index(request):
    return HttpResponse(
        "<!doctype html><meta charset=utf-8><title>Hello from Django</title>"
        f'<link rel="stylesheet" href="{static("hello.css")}">'
        "<h1>Hello from Django on Hakobune!</h1>"
        f"<p>Container <code>{socket.gethostname()}</code>, port {os.environ.get('PORT', '8080')}. "
        "The stylesheet is a static file, collected at build time and served by WhiteNoise.</p>"
    )
