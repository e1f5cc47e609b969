# The Hakobune platform itself (portal, worker, scheduler), for docker-compose.yml.
FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends debootstrap ca-certificates git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/hakobune
COPY pyproject.toml README.md ./
COPY hakobune ./hakobune
COPY manage.py ./
RUN pip install --no-cache-dir .
ENV HAKOBUNE_DATA_DIR=/var/lib/hakobune
EXPOSE 8000
CMD ["gunicorn", "-c", "python:hakobune.platform.gunicorn_conf", "hakobune.platform.asgi", "--bind", "0.0.0.0:8000"]
