"""A FastAPI app: a page, a JSON endpoint and the interactive docs at /docs."""

import os
import socket

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

app = FastAPI(title="Hello from FastAPI")


@app.get("/", response_class=HTMLResponse)
def index():
    return (
        "<!doctype html><meta charset=utf-8><title>Hello from FastAPI</title>"
        "<h1>Hello from FastAPI on Hakobune!</h1>"
        f"<p>Container <code>{socket.gethostname()}</code>, port {os.environ.get('PORT', '8080')}. "
        'Try <a href="/docs">/docs</a> or <a href="/api/hello">/api/hello</a>.</p>'
    )


@app.get("/api/hello")
def hello(name: str = "world"):
    return {"hello": name}
