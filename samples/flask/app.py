"""A Flask app in one file: the page below, on the port Hakobune gives in $PORT."""

import os
import socket

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return (
        "<!doctype html><meta charset=utf-8><title>Hello from Flask</title>"
        "<h1>Hello from Flask on Hakobune!</h1>"
        f"<p>This page comes from a container called <code>{socket.gethostname()}</code>, "
        f"running as user id {os.getuid()}, listening on port {os.environ.get('PORT', '8080')}.</p>"
    )


@app.get("/healthz")
def healthz():
    return {"ok": True}
