"""Hakobune settings: every value comes from the environment, with a default that
works on a laptop. All of them are listed in .env.example."""

import hashlib
import hmac
import os
import socket
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from hakobune.platform.transport_security import is_real_domain, transport_security


def env(name, default=""):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name, default):
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}")


def env_list(name, default=""):
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
PACKAGE_DIR = PROJECT_DIR / "hakobune"

# Where Hakobune keeps uploads, build workspaces, the SQLite file and its run state.
DATA_DIR = Path(env("HAKOBUNE_DATA_DIR", str(PROJECT_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    # A laptop default: one random key per data directory, kept beside the database.
    key_file = DATA_DIR / "secret_key"
    if key_file.exists():
        SECRET_KEY = key_file.read_text().strip()
    else:
        import secrets

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = secrets.token_urlsafe(50)
        key_file.write_text(SECRET_KEY)
        key_file.chmod(0o600)

BASE_DOMAIN = env("BASE_DOMAIN", "localhost")
PORTAL_PORT = env_int("PORTAL_PORT", 8000)
ROUTER_PORT = env_int("ROUTER_PORT", 8080)
ROUTER_ADMIN_URL = env("ROUTER_ADMIN_URL", "http://127.0.0.1:2019")
# Where the router's last good config is kept (last-good.json): a restarted
# Caddy starts from it (scripts/start.sh), and a refused config falls back to it.
ROUTER_STATE_DIR = Path(env("ROUTER_STATE_DIR", str(DATA_DIR / "router")))
# The scheme services are reached with; "http" for *.localhost, where Caddy's
# automatic HTTPS is off.
# Caddy's automatic HTTPS (certificates for every service address and custom
# domain) is on when BASE_DOMAIN is a real domain, off for *.localhost.
ROUTER_HTTPS = env_bool("ROUTER_HTTPS", is_real_domain(BASE_DOMAIN))
ROUTER_SCHEME = env("ROUTER_SCHEME", "https" if ROUTER_HTTPS else "http")
ROUTER_HTTPS_PORT = env_int("ROUTER_HTTPS_PORT", 443)
# The router's JSON access log: one line per request, naming the host (so the
# service); scale to zero and the metrics read it.
ROUTER_ACCESS_LOG = env("ROUTER_ACCESS_LOG", str(DATA_DIR / "log" / "router-access.log"))
# The secret the router adds (as X-Hakobune-Waker) to the requests it sends to
# the waker, the portal's /_hakobune/wake/; the waker answers nothing without
# it. Empty: derived from SECRET_KEY. Changing it takes effect for the routes
# once they are rewritten (`manage.py sync_router`, which `make run` does).
WAKER_SECRET = env("WAKER_SECRET") or hmac.new(SECRET_KEY.encode(), b"hakobune waker", hashlib.sha256).hexdigest()
# How long a request to a sleeping service waits for it to wake before it is
# answered 503 "still starting" (the wake itself goes on).
WAKER_WAIT_SECONDS = env_int("WAKER_WAIT_SECONDS", 90)
# Wakes run at once in each portal process (each in a thread of the waker's
# own, never in a request's); more wait for a free one.
WAKER_MAX_WAKES = env_int("WAKER_MAX_WAKES", 4)
# The largest answer the waker passes on from a service it woke; a longer one
# is cut off (later requests go straight to the service, with no such cap).
WAKER_MAX_ANSWER_BYTES = env_int("WAKER_MAX_ANSWER_BYTES", 50 * 1000 * 1000)

# The services' own hostnames are allowed too: the waker answers a sleeping
# service's first request under its hostname.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],.localhost") + [f".{BASE_DOMAIN}"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# The portal over HTTPS (default: when BASE_DOMAIN is a real domain), behind a
# proxy that ends TLS: secure cookies, HSTS, and the proxy's X-Forwarded-Proto
# trusted. See transport_security.py and docs/security.md.
try:
    _transport = transport_security(os.environ)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc))
HTTPS = _transport["HTTPS"]
SESSION_COOKIE_SECURE = _transport["SESSION_COOKIE_SECURE"]
CSRF_COOKIE_SECURE = _transport["CSRF_COOKIE_SECURE"]
SECURE_HSTS_SECONDS = _transport["SECURE_HSTS_SECONDS"]
SECURE_HSTS_INCLUDE_SUBDOMAINS = _transport["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
SECURE_PROXY_SSL_HEADER = _transport["SECURE_PROXY_SSL_HEADER"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "hakobune.platform.accounts",
    "hakobune.platform.services",
    "hakobune.platform.builds",
    "hakobune.platform.observability",
    "hakobune.platform.governance",
    "hakobune.platform.notifications",
    "hakobune.platform.addons",
    "hakobune.platform.volumes",
    "hakobune.platform.api",
    "hakobune.frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "hakobune.platform.static_files.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The portal speaks the browser's language (Accept-Language), or the one
    # picked with the header's switcher (a cookie); after sessions, before common.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "hakobune.platform.accounts.middleware.OneTimePasswordMiddleware",
    # Last: turns a login refused for too many failures into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hakobune.platform.urls"
WSGI_APPLICATION = "hakobune.platform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "hakobune.frontend.context.platform",
            ],
        },
    },
]

# A connection per request (or task), closed at its end: the portal is served
# under ASGI, where each request runs in a thread of its own, and a connection
# kept for the next request of the same thread (CONN_MAX_AGE > 0) is never
# reused nor closed: under 50 people (bench/portal_load.py) the portal held
# PostgreSQL's 100 connections within a minute and a third of its answers were
# 500s ("too many clients already"). Django's documentation says as much for
# ASGI. DB_CONN_MAX_AGE is there for a deployment that knows better.
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'hakobune.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if env("TEST_DATABASE_NAME"):
    # A test database of the run's own (scripts/test.sh names it), so a run
    # beside another, or after one that was killed, never finds it taken.
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME")}


def _pool(database: dict, size_setting: str, size: int) -> None:
    """A pool of PostgreSQL connections per process for `database` (below)."""
    if database["CONN_MAX_AGE"]:
        raise ImproperlyConfigured(f"DB_CONN_MAX_AGE and the connection pool exclude each other: set {size_setting}=0 to keep connections per thread.")
    database.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN_SIZE", 1),
        "max_size": env_int(size_setting, size),
        "timeout": env_int("DB_POOL_TIMEOUT", 30),
    }


if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The portal, the worker and the scheduler share one SQLite file: wait for
    # locks instead of failing, and let readers run beside the writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so that a worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_int("DB_POOL_MAX_SIZE", 20) > 0:
    # PostgreSQL: a pool of connections per process (psycopg_pool), so a request
    # borrows an open connection instead of opening one (a new PostgreSQL
    # connection costs a process fork and an authentication, 5-10 ms, more on a
    # busy host: PostgreSQL's p95 under bench/portal_load.py was 310 ms without
    # the pool). A request returns its connection when it ends, so the ASGI
    # worker's thread per request is no leak, unlike CONN_MAX_AGE > 0 above.
    # Sized for one portal process (gunicorn_conf.py: PORTAL_WORKERS processes,
    # each serving several requests at once): DB_POOL_MAX_SIZE connections at
    # most per process, DB_POOL_MIN_SIZE (1) kept open; a request that finds none
    # free waits up to DB_POOL_TIMEOUT seconds, then fails: 30 s, since on a
    # host overloaded by other work (load average 20 on 2 cores) requests held
    # their connection for seconds and 1 % of them waited more than 10 s and
    # failed, where the same load without a pool only grew slower. A request
    # holds its connection from its first query to its end (a login through
    # its password hash), so a process needs as many as it has requests in
    # flight: 20 covers 50 people over 2 processes even when the host is so
    # busy that each request takes seconds (with 8, logins waited for a
    # connection longer than the timeout and failed), and 2 portal processes
    # with the workers' one connection per task stay under PostgreSQL's 100.
    # Idle ones above DB_POOL_MIN_SIZE close after 10 minutes (psycopg_pool).
    # The Celery workers (prefork) close their pool after each task, as they
    # close a plain connection (celery's Django fix-up), so a task still opens
    # one connection, as before; that is why the pool keeps only one open when
    # idle. DB_POOL_MAX_SIZE=0 turns the pool off.
    _pool(DATABASES["default"], "DB_POOL_MAX_SIZE", 20)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The services' runtime logs live in a database of their own (alias "logs",
# docs/architecture.md, "Runtime logs"): a flood of lines writes there, never
# to the platform's database, so it cannot hold up a deploy even on the
# embedded SQLite default (whose one writer at a time is per file). Default: a
# SQLite file beside the platform's; LOGS_DATABASE_URL names another (a
# PostgreSQL database of its own in production).
_logs_url = env("LOGS_DATABASE_URL", f"sqlite:///{DATA_DIR / 'logs.sqlite3'}")
DATABASES["logs"] = dj_database_url.parse(_logs_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))
if DATABASES["logs"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["logs"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["logs"]["TEST"] = {"NAME": str(DATA_DIR / "test-logs.sqlite3")}
else:
    if env("TEST_DATABASE_NAME"):
        DATABASES["logs"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME") + "_logs"}
    if (DATABASES["logs"]["ENGINE"] == "django.db.backends.postgresql" and env_int("LOGS_DB_POOL_MAX_SIZE", 10) > 0
            and not DATABASES["logs"]["CONN_MAX_AGE"]):
        # A pool as the platform's database has (above), for the same reason:
        # a connection per request costs a fork and an authentication, and the
        # log card asks every 2 s while it follows. Fewer connections than the
        # platform's: only the log card and the API read here. (With
        # DB_CONN_MAX_AGE, connections are kept per thread instead, as there.)
        _pool(DATABASES["logs"], "LOGS_DB_POOL_MAX_SIZE", 10)
DATABASE_ROUTERS = ["hakobune.platform.dbrouters.LogsRouter"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Not a check: Django tells validators when a password changed (any
    # set_password, in the portal, the admin or `make admin-password`), and this
    # one revokes the person's API tokens then.
    {"NAME": "hakobune.platform.accounts.tokens.RevokeApiTokensOnPasswordChange"},
]
# Logins (the portal's, the admin's and POST /api/v1/auth/token) go through
# django-axes first: after LOGIN_FAILURE_LIMIT failures the same person from the
# same address is refused, even with the right password, for
# LOGIN_COOLOFF_MINUTES after the last failure.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
# What is locked: "username+ip_address" (a person at one address: nobody can
# lock another person out from elsewhere), "ip_address" (an address, whoever it
# tries), "username"; several separated by commas, any of them locks.
AXES_LOCKOUT_PARAMETERS = [
    [part.strip() for part in item.split("+")] for item in env_list("LOGIN_LOCKOUT_BY", "username+ip_address")
]
if not all(part in ("username", "ip_address", "user_agent") for item in AXES_LOCKOUT_PARAMETERS for part in item):
    raise ImproperlyConfigured("LOGIN_LOCKOUT_BY names username, ip_address or user_agent, joined by + or ,")
# Refused attempts during a lockout do not extend it, so "try again at" holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not forget earlier failures: with a lockout by address alone,
# an attacker's own good login would otherwise reset the count for the address.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "hakobune.platform.accounts.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "hakobune.platform.accounts.lockout.client_ip"
# How many proxies in front of the portal add to X-Forwarded-For (0: none, the
# client's address is the connection's). Only a proxy's own entries are trusted.
PORTAL_PROXY_COUNT = env_int("PORTAL_PROXY_COUNT", 0)
AXES_VERBOSE = False
# No row per successful login: failures are what the lockout needs.
AXES_DISABLE_ACCESS_LOG = True
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "services:dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"

# English, and Japanese from hakobune/platform/locale (compiled .mo files are
# committed, so a fresh clone needs no gettext to serve them). Anything else the
# browser asks for gets English.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ja", "日本語")]
LOCALE_PATHS = [PACKAGE_DIR / "platform" / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the apps too, so a portal started before
# collectstatic (or a test run) still has its stylesheet.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = DATA_DIR / "media"
# Uploads larger than this go to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "hakobune.platform.services.uploads.SizeLimitedUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# Celery: Redis is the broker and keeps task results briefly.
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The prefix of this platform's queues: <prefix>.pipeline, <prefix>.builds,
# <prefix>.housekeeping and <prefix>.host.<WORKER_HOST> (hakobune/platform/queue.py
# routes each task to one). A test run uses a prefix of its own.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "hakobune")
CELERY_TASK_ROUTES = ("hakobune.platform.queue.route",)
# What a worker started without -Q consumes: every purpose (and its host's queue).
CELERY_TASK_QUEUES = {
    f"{CELERY_TASK_DEFAULT_QUEUE}.{purpose}": {} for purpose in ("pipeline", "builds", "housekeeping")
}
# This worker host's name: the steps after a build's fetch run here, where
# its source was unpacked (in WORKSPACE_DIR), through <prefix>.host.<name>.
WORKER_HOST = env("WORKER_HOST", "") or socket.gethostname()
WORKSPACE_DIR = Path(env("WORKSPACE_DIR", str(DATA_DIR / "workspaces"))).resolve()
# A worker that lost Redis (a restart of it) goes on with the steps it runs;
# they need the database, not the broker (docs/architecture.md, "Crash safety").
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Kombu's Redis transport, repaired so that a worker lives through a restart of
# Redis (hakobune/platform/broker.py).
CELERY_BROKER_TRANSPORT = "hakobune.platform.broker:Transport"
# Metrics: a reading of every running service this often (seconds).
METRICS_SECONDS = env_int("METRICS_SECONDS", 15)
# Images and build leftovers are pruned this often (seconds; "Disk" below).
PRUNE_SECONDS = env_int("PRUNE_SECONDS", 3600)
# Volumes are measured (du, in a helper container) this often (seconds), for
# the teams' disk quotas.
VOLUME_MEASURE_SECONDS = env_int("VOLUME_MEASURE_SECONDS", 600)
_HOUSEKEEPING = {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.housekeeping"}
# Scheduled jobs (hakobune.toml's [[jobs]], services/jobs.py): looked at every
# JOBS_TICK_SECONDS, so a run starts at most that late and its end is
# recorded at most that late; a tick older than JOB_CATCH_UP_SECONDS when
# first seen is not run (no backlog after an outage); a run is stopped after
# JOB_TIMEOUT seconds.
JOBS_TICK_SECONDS = env_int("JOBS_TICK_SECONDS", 15)
JOB_CATCH_UP_SECONDS = env_int("JOB_CATCH_UP_SECONDS", 120)
JOB_TIMEOUT = env_int("JOB_TIMEOUT", 3600)
# Backups of add-ons: the scheduler looks for due ones (and lost ones) this often.
BACKUP_TICK_SECONDS = env_int("BACKUP_TICK_SECONDS", 60)
CELERY_BEAT_SCHEDULE = {
    "scale-idle-to-zero": {"task": "hakobune.worker.tasks.scale_idle_to_zero", "schedule": 15.0,
                           "options": _HOUSEKEEPING},
    # A collection still waiting after one period is dropped (and counted):
    # the next one is due.
    "collect-metrics": {"task": "hakobune.worker.tasks.collect_metrics", "schedule": float(METRICS_SECONDS),
                        "options": {**_HOUSEKEEPING, "expires": float(METRICS_SECONDS)}},
    "roll-up-metrics": {"task": "hakobune.worker.tasks.roll_up_metrics", "schedule": 600.0, "options": _HOUSEKEEPING},
    # Runtime logs past their retention window or their team's cap go.
    "prune-logs": {"task": "hakobune.worker.tasks.prune_logs",
                   "schedule": float(env_int("LOGS_PRUNE_SECONDS", 300)), "options": _HOUSEKEEPING},
    # Notification deliveries whose worker died mid-way, or whose task Redis lost.
    "recover-notifications": {"task": "hakobune.worker.tasks.recover_notifications",
                              "schedule": float(env_int("NOTIFY_RECOVER_SECONDS", 60)), "options": _HOUSEKEEPING},
    "prune-images": {"task": "hakobune.worker.tasks.prune_images", "schedule": float(PRUNE_SECONDS),
                     "options": _HOUSEKEEPING},
    "run-jobs": {"task": "hakobune.worker.tasks.run_jobs", "schedule": float(JOBS_TICK_SECONDS),
                 "options": {**_HOUSEKEEPING, "expires": float(JOBS_TICK_SECONDS)}},
    # What each team's volumes hold on disk, for its disk quota.
    "measure-volumes": {"task": "hakobune.worker.tasks.measure_volumes", "schedule": float(VOLUME_MEASURE_SECONDS),
                        "options": {**_HOUSEKEEPING, "expires": float(VOLUME_MEASURE_SECONDS)}},
    "reconcile": {"task": "hakobune.worker.tasks.reconcile", "schedule": float(env_int("RECONCILE_SECONDS", 30)),
                  "options": _HOUSEKEEPING},
    "sweep-pipeline": {"task": "hakobune.worker.tasks.sweep_pipeline", "schedule": float(env_int("SWEEP_SECONDS", 20)),
                       "options": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.pipeline"}},
    # Admission is also asked after every deploy and every build's end; this
    # is the safety net (a Redis restart that lost those requests loses no build).
    # Due scheduled backups made and queued; backups and restores whose queue was lost, queued again.
    "schedule-backups": {"task": "hakobune.worker.tasks.schedule_backups", "schedule": float(BACKUP_TICK_SECONDS),
                         "options": {**_HOUSEKEEPING, "expires": float(BACKUP_TICK_SECONDS)}},
    "admit-builds": {"task": "hakobune.worker.tasks.admit_builds", "schedule": float(env_int("ADMIT_BUILDS_SECONDS", 10)),
                     "options": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.pipeline"}},
}

# The REST API under /api/v1/ (hakobune/platform/api): bearer tokens or the
# portal's session, JSON errors with a message a person can act on.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hakobune.platform.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON everywhere; the deploy endpoint also takes multipart uploads.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hakobune.platform.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Hakobune API",
    "DESCRIPTION": "Deploy and run services on Hakobune. Authenticate with `Authorization: Bearer <token>`; "
    "create a token in the portal (API tokens) or with POST /api/v1/auth/token.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page's JavaScript and CSS come from this server, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The add-ons' `kind` beside the notification targets' own.
    "ENUM_NAME_OVERRIDES": {
        "AddOnKindEnum": "hakobune.platform.addons.models.Kind",
        "KindEnum": "hakobune.platform.notifications.models.TargetKind",
    },
}
# How long one streamed answer (a build log or runtime logs with ?follow=1)
# stays open, and how often it looks for news.
API_STREAM_MAX_SECONDS = env_int("API_STREAM_MAX_SECONDS", 1800)
API_STREAM_POLL_SECONDS = float(env("API_STREAM_POLL_SECONDS", "1"))
# How many streams one portal process serves at once, in all and of one
# person; beyond them a new one is refused (503, 429) rather than queued.
API_STREAM_MAX_OPEN = env_int("API_STREAM_MAX_OPEN", 100)
API_STREAM_MAX_OPEN_PER_PERSON = env_int("API_STREAM_MAX_OPEN_PER_PERSON", 8)
# One-off commands at a terminal (`hakobune run`): how long one may run, and
# how many of a team's may run at once.
RUN_MAX_SECONDS = env_int("RUN_MAX_SECONDS", 3600)
RUN_MAX_OPEN_PER_TEAM = env_int("RUN_MAX_OPEN_PER_TEAM", 3)

# Stacks: the base image for each language. A registry image by default; when no
# registry can serve it, Hakobune builds one locally from Debian packages.
STACK_IMAGES = {
    "python": env("STACK_PYTHON_IMAGE", "python:3.12-slim"),
    "node": env("STACK_NODE_IMAGE", "node:22-slim"),
    # The build stage of Go apps; they run on the static stack.
    "go": env("STACK_GO_IMAGE", "golang:1.23"),
    # Static sites and the run stage of compiled apps: needs lighttpd and the
    # config at /etc/lighttpd/hakobune.conf, so by default Hakobune's own
    # (hakobune/stack-static, built from Debian).
    "static": env("STACK_STATIC_IMAGE", ""),
    # Apps built with Node.js and Python together (.buildpacks, hakobune.toml
    # `languages`): no official image has both, so by default Hakobune's own
    # (hakobune/stack-python-node, built from Debian).
    "python-node": env("STACK_PYTHON_NODE_IMAGE", ""),
    # Java apps: the JDK and Maven, whose global settings.xml reads Debian's
    # packaged plugins and $MAVEN_REPOSITORY (below), so by default Hakobune's
    # own (hakobune/stack-java, built from Debian).
    "java": env("STACK_JAVA_IMAGE", ""),
    # Ruby and PHP: Hakobune's own by default (Debian's Ruby with Rack and Puma to
    # serve a config.ru; PHP-FPM behind lighttpd), which no official image has.
    "ruby": env("STACK_RUBY_IMAGE", ""),
    "php": env("STACK_PHP_IMAGE", ""),
}
# Where builds install packages from (hakobune/worker/package_sources.py): empty
# is each ecosystem's public source (pypi.org, registry.npmjs.org, rubygems.org,
# repo.packagist.org); a host that cannot reach one names a mirror it can. A
# build that fails because its source did not answer says which setting to change.
PACKAGE_SOURCES = {
    "pip": env("PIP_INDEX_URL", ""),
    "npm": env("NPM_REGISTRY", ""),
    "rubygems": env("RUBYGEMS_SOURCE", ""),
    "composer": env("COMPOSER_REPOSITORY", ""),
}

# Add-ons (hakobune/platform/addons): a team's PostgreSQL or Redis on the local
# runtime. The registry image where this host has it or can pull it, else
# Hakobune's own stack built from Debian (`python manage.py stack ensure postgres`).
ADDON_IMAGES = {
    "postgres": env("ADDON_POSTGRES_IMAGE", "postgres:16"),
    "redis": env("ADDON_REDIS_IMAGE", "redis:7"),
}
# What one add-on holds of its team's quota (and its container's limits).
ADDON_CPU = float(env("ADDON_CPU", "0.5"))
ADDON_MEMORY_MB = env_int("ADDON_MEMORY_MB", 256)
ADDON_READY_TIMEOUT = env_int("ADDON_READY_TIMEOUT", 90)
# Backups of add-ons (hakobune/platform/addons/backups.py): where they are
# stored ("local": BACKUP_DIR in the data directory, or "s3": the bucket
# below, any S3-compatible server), the schedule and retention an add-on
# starts with (each add-on may change its own), and the limits of the
# containers that dump, check and restore them.
BACKUP_STORAGE = env("BACKUP_STORAGE", "local")
BACKUP_DIR = Path(env("BACKUP_DIR", str(DATA_DIR / "backups"))).resolve()
BACKUP_S3 = {
    "endpoint_url": env("BACKUP_S3_ENDPOINT_URL", ""),
    "bucket": env("BACKUP_S3_BUCKET", ""),
    "region": env("BACKUP_S3_REGION", "us-east-1"),
    "prefix": env("BACKUP_S3_PREFIX", "hakobune/"),
    "access_key_id": env("BACKUP_S3_ACCESS_KEY_ID", ""),
    # The secret key as HAKOBUNE_ENCRYPTION_KEY encrypts it (`python manage.py
    # encrypt_secret`, a "fernet:" value) or, discouraged, in clear.
    "secret_access_key": env("BACKUP_S3_SECRET_ACCESS_KEY", ""),
}
BACKUP_SCHEDULE = env("BACKUP_SCHEDULE", "0 3 * * *")
BACKUP_RETENTION = env_int("BACKUP_RETENTION", 7)
BACKUP_TIMEOUT = env_int("BACKUP_TIMEOUT", 1800)
BACKUP_MEMORY_MB = env_int("BACKUP_MEMORY_MB", 512)
BACKUP_CPU = float(env("BACKUP_CPU", "1.0"))
# How long a deploy waits for the add-ons attached to its service that are
# still starting (their stack being built, the first time) before its release
# phase and instances start.
ADDON_WAIT_SECONDS = env_int("ADDON_WAIT_SECONDS", 420)

# Runtime backends, chosen per service like Django's email backends.
RUNTIME_BACKENDS = {
    "local": {
        "BACKEND": "hakobune.runtime.docker_local.DockerLocalBackend",
        "OPTIONS": {
            "docker_url": env("DOCKER_HOST", "unix:///var/run/docker.sock"),
            "instance": env("HAKOBUNE_INSTANCE", "hakobune"),
            "boot_timeout": env_int("BOOT_TIMEOUT", 60),
            "router_admin_url": ROUTER_ADMIN_URL,
            "router_port": ROUTER_PORT,
            "access_log": ROUTER_ACCESS_LOG,
            "https": ROUTER_HTTPS,
            "https_port": ROUTER_HTTPS_PORT,
            "waker_upstream": env("WAKER_UPSTREAM", f"127.0.0.1:{PORTAL_PORT}"),
            "waker_secret": WAKER_SECRET,
            "router_state_dir": str(ROUTER_STATE_DIR),
        },
    },
}
DEFAULT_RUNTIME_BACKEND = env("DEFAULT_RUNTIME_BACKEND", "local")
# Each team's network on the local runtime gets a block of this range
# (accounts/networks.py; blocks that overlap the host's own networks or
# resolvers are skipped), sized from the team's quota when it is claimed:
# room for twice the instances the quota allows (a redeploy starts the new
# ones beside the live ones), no smaller than a /TEAM_SUBNET_PREFIX and no
# larger than a /TEAM_SUBNET_LARGEST_PREFIX. The default quota (8 CPU) asks
# for 160 addresses, a /24, so the default /14 holds 1,024 such teams. It
# must lie in a private range, which the firewall keeps containers out of.
# Empty: Docker's default pools, which hold about 31 networks.
TEAM_SUBNET_POOL = env("TEAM_SUBNET_POOL", "10.212.0.0/14")
TEAM_SUBNET_PREFIX = env_int("TEAM_SUBNET_PREFIX", 26)
TEAM_SUBNET_LARGEST_PREFIX = env_int("TEAM_SUBNET_LARGEST_PREFIX", 22)
if TEAM_SUBNET_POOL.strip():
    from hakobune.runtime.subnets import PoolError, parse_pool

    try:
        if not 8 <= TEAM_SUBNET_LARGEST_PREFIX <= TEAM_SUBNET_PREFIX:
            raise PoolError(
                f"TEAM_SUBNET_LARGEST_PREFIX={TEAM_SUBNET_LARGEST_PREFIX} must be between 8 and "
                f"TEAM_SUBNET_PREFIX ({TEAM_SUBNET_PREFIX}): the largest block a team gets is a /{TEAM_SUBNET_LARGEST_PREFIX}"
            )
        parse_pool(TEAM_SUBNET_POOL, TEAM_SUBNET_LARGEST_PREFIX)
    except PoolError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
# Google Cloud Run, offered only when a project is set (see .env.example and
# README "Cloud Run"): Cloud Build builds, Artifact Registry keeps the images.
if env("CLOUDRUN_SERVICE_ACCOUNT"):
    raise ImproperlyConfigured(
        "CLOUDRUN_SERVICE_ACCOUNT is no longer read: one account for every team's services would let each team "
        "read the others' secrets. Each team's services and builds run as accounts of their own (README, Cloud Run); "
        "remove the variable, and name a team's account on the Cloud Run page when it is not the derived one."
    )
if env("CLOUDRUN_PROJECT"):
    RUNTIME_BACKENDS["cloudrun"] = {
        "BACKEND": "hakobune.runtime.cloud_run.CloudRunBackend",
        "OPTIONS": {
            "project": env("CLOUDRUN_PROJECT"),
            "region": env("CLOUDRUN_REGION", "europe-west1"),
            "repository": env("CLOUDRUN_REPOSITORY", "hakobune"),
            # A service-account key file; empty: application default credentials.
            "credentials": env("CLOUDRUN_CREDENTIALS", env("GOOGLE_APPLICATION_CREDENTIALS")),
            "bucket": env("CLOUDRUN_BUCKET"),
            "builder": env("CLOUDRUN_BUILDER", "dockerfile"),
            # Cloud Build builds plans on the stacks' registry images.
            "stack_images": STACK_IMAGES,
            "min_instances": env_int("CLOUDRUN_MIN_INSTANCES", 0),
            "concurrency": env_int("CLOUDRUN_CONCURRENCY", 80),
            "request_timeout": env_int("CLOUDRUN_REQUEST_TIMEOUT", 300),
            "ingress": env("CLOUDRUN_INGRESS", "all"),
            # No one service account for every team's services: each team runs
            # and builds as accounts of its own (README "Cloud Run").
        },
    }

# Locally built stacks are cached here as root filesystem tarballs.
STACK_CACHE_DIR = Path(env("HAKOBUNE_STACK_CACHE", str(DATA_DIR / "stacks")))
STACK_DEBIAN_SUITE = env("STACK_DEBIAN_SUITE", "bookworm")
STACK_DEBIAN_MIRROR = env("STACK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Further stacks for apps that ask for a language version the default stack
# lacks (.python-version, runtime.txt, engines.node, go.mod): "python=trixie,
# node=trixie" builds them from Debian's next release like the default one;
# "python=python:3.13-slim" uses an image. Detection picks the first stack that
# has the version asked for, and refuses the app in a sentence when none has.
STACK_VARIANTS: dict[str, list[str]] = {}
for _item in env("STACK_VARIANTS", "").split(","):
    _language, _, _variant = _item.strip().partition("=")
    if _language.strip() and _variant.strip():
        STACK_VARIANTS.setdefault(_language.strip(), []).append(_variant.strip())
# Where Java builds fetch the packages Debian does not carry: Maven Central, or
# a company mirror of it ("https://maven.example.com/maven2/"). Put in each
# Java build's environment; a build that cannot reach it fails saying so.
MAVEN_REPOSITORY = env("MAVEN_REPOSITORY", "https://repo.maven.apache.org/maven2")
# A CA bundle copied into locally built stacks and into every build, for hosts
# whose HTTPS goes through a proxy with its own CA. Empty: none.
_default_ca = "/etc/ssl/certs/ca-certificates.crt"
BUILD_CA_BUNDLE = env("BUILD_CA_BUNDLE", _default_ca if Path(_default_ca).exists() else "")

BUILD_TIMEOUT = env_int("BUILD_TIMEOUT", 900)
# How many builds fetch, detect or build at once on this platform; the rest
# wait, queued, and are admitted fairly (the team with the fewest builds in
# progress first, then the oldest). Sized for two cores.
BUILD_CONCURRENCY = env_int("BUILD_CONCURRENCY", 2)

# Governance: what a team may hold unless staff set its own quota (Quotas page),
# and whether new services wait for an administrator's review before going live.
TEAM_MAX_SERVICES = env_int("TEAM_MAX_SERVICES", 25)
TEAM_MAX_CPU = float(env("TEAM_MAX_CPU", "8"))
TEAM_MAX_MEMORY_MB = env_int("TEAM_MAX_MEMORY_MB", 16384)
# What a team's volumes and backups may hold on disk together (MiB), unless
# its policy says otherwise (governance/disk_quota.py).
TEAM_MAX_DISK_MB = env_int("TEAM_MAX_DISK_MB", 10240)
# How many teams a person may create (each comes with its own quota);
# administrators have no limit.
TEAM_CREATE_LIMIT = env_int("TEAM_CREATE_LIMIT", 3)
REVIEW_NEW_SERVICES = env_bool("REVIEW_NEW_SERVICES", False)
# Metrics readings: each one kept for METRICS_RAW_HOURS, then their averages
# over METRICS_ROLLUP_SECONDS, until METRICS_RETENTION_HOURS.
METRICS_RAW_HOURS = env_int("METRICS_RAW_HOURS", 2)
METRICS_ROLLUP_SECONDS = env_int("METRICS_ROLLUP_SECONDS", 300)
METRICS_RETENTION_HOURS = env_int("METRICS_RETENTION_HOURS", 48)
# Runtime logs (docs/architecture.md, "Runtime logs"). Each service may store
# LOGS_RATE_PER_SECOND lines a second (a burst of LOGS_BURST); what it prints
# beyond is dropped and said in one line per LOGS_DROP_WINDOW_SECONDS
# ("12,345 lines dropped in 10 s"). A line is cut at LOGS_MAX_LINE_BYTES.
LOGS_RATE_PER_SECOND = env_int("LOGS_RATE_PER_SECOND", 200)
LOGS_BURST = env_int("LOGS_BURST", 1000)
LOGS_DROP_WINDOW_SECONDS = env_int("LOGS_DROP_WINDOW_SECONDS", 10)
LOGS_MAX_LINE_BYTES = env_int("LOGS_MAX_LINE_BYTES", 4096)
# Lines are kept this long, and at most LOGS_TEAM_MAX_MB per team (the oldest
# go first), checked every LOGS_PRUNE_SECONDS by the housekeeping.
LOGS_RETENTION_HOURS = env_int("LOGS_RETENTION_HOURS", 72)
LOGS_TEAM_MAX_MB = env_int("LOGS_TEAM_MAX_MB", 200)
LOGS_PRUNE_SECONDS = env_int("LOGS_PRUNE_SECONDS", 300)
# A page of the log (portal, API) holds at most this many lines.
LOGS_PAGE_MAX = env_int("LOGS_PAGE_MAX", 500)
# The events of each service and team (deploys, crashes, settings changes, who
# did each: docs/architecture.md, "Events and the audit log") are the audit
# log: kept this many days, pruned with the images every PRUNE_SECONDS.
EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 365)
# Crashes of one instance with the same exit code within this many minutes of
# the last are one event that counts them (a crash loop), not one each.
EVENT_CRASH_REPEAT_MINUTES = env_int("EVENT_CRASH_REPEAT_MINUTES", 10)
# Log drains (a team's runtime logs sent to its own endpoint,
# platform/observability/drains.py), shipped by the log collector's process:
# LOG_DRAIN_BATCH_LINES lines a request, each connection given
# LOG_DRAIN_TIMEOUT seconds; a failure is tried again after 2, 4, 8 … s, at
# most LOG_DRAIN_MAX_BACKOFF; a drain more than LOG_DRAIN_MAX_BACKLOG lines
# behind skips its oldest (counted and shown). LOG_DRAIN_ALLOWED_HOSTS ("host"
# or "host:port") may be private or loopback addresses and plain http:// or
# syslog:// (an admin's allow-list; the tests name their receivers here).
LOG_DRAIN_ALLOWED_HOSTS = frozenset(env_list("LOG_DRAIN_ALLOWED_HOSTS", ""))
LOG_DRAIN_BATCH_LINES = env_int("LOG_DRAIN_BATCH_LINES", 500)
LOG_DRAIN_BATCHES_PER_TURN = env_int("LOG_DRAIN_BATCHES_PER_TURN", 20)
LOG_DRAIN_TIMEOUT = env_int("LOG_DRAIN_TIMEOUT", 10)
LOG_DRAIN_MAX_BACKOFF = env_int("LOG_DRAIN_MAX_BACKOFF", 300)
LOG_DRAIN_MAX_BACKLOG = env_int("LOG_DRAIN_MAX_BACKLOG", 20_000)
LOG_DRAIN_POLL_SECONDS = float(env("LOG_DRAIN_POLL_SECONDS", "1"))
LOG_DRAIN_CONCURRENCY = env_int("LOG_DRAIN_CONCURRENCY", 4)
# The CA certificates a drain's TLS endpoint is checked against; empty: the system's.
LOG_DRAIN_CA_BUNDLE = env("LOG_DRAIN_CA_BUNDLE", "")
# The platform's own metrics at /metrics (Prometheus text format) answer only
# `Authorization: Bearer <METRICS_TOKEN>`; unset, /metrics is a 404.
METRICS_TOKEN = env("METRICS_TOKEN", "")
# A filter (text, stream, process, release, time) reads at most this many of
# a service's newest lines per page, and the page says how far back it read.
LOGS_SEARCH_LINES = env_int("LOGS_SEARCH_LINES", 20_000)
# Images of a service's last N releases are kept for instant rollbacks (with
# the live release's and those of builds on their way to a release); older
# ones are pruned every PRUNE_SECONDS (docs/architecture.md, "Disk").
KEEP_RELEASES = env_int("KEEP_RELEASES", 5)
# Build leftovers (untagged images Hakobune's builds made, and the engine's
# build cache) unused for this many hours go at each prune (0: never). More
# than BUILD_TIMEOUT, so a build under way never loses its layers.
BUILD_CACHE_PRUNE_HOURS = env_int("BUILD_CACHE_PRUNE_HOURS", 24)
# No build starts while the workspace, uploads or the Docker Engine's data root
# have less free space than this (MiB; 0: no check). The build is refused in
# words, naming what to prune.
BUILD_MIN_FREE_DISK_MB = env_int("BUILD_MIN_FREE_DISK_MB", 2048)
# Source snapshots (uploads and packed git trees) of each service's last N
# deploys are kept for "deploy again"; those of its kept releases always are.
KEEP_SOURCE_SNAPSHOTS = env_int("KEEP_SOURCE_SNAPSHOTS", 10)
# What a build's log keeps of what the build printed; the rest is counted.
BUILD_LOG_MAX_LINES = env_int("BUILD_LOG_MAX_LINES", 20_000)
BUILD_LOG_MAX_BYTES = env_int("BUILD_LOG_MAX_BYTES", 5_000_000)
# Services' addresses are <service>.<team>.<BASE_DOMAIN>. The addresses they
# had before (<service>-<team>) redirect there for this many days after the
# change (0: not at all).
LEGACY_ADDRESS_DAYS = env_int("LEGACY_ADDRESS_DAYS", 90)
# Custom domains are verified by a TXT record _hakobune.<domain>, looked up
# through these name servers (empty: this host's) on this port.
DOMAIN_VERIFY_NAMESERVERS = env_list("DOMAIN_VERIFY_NAMESERVERS", "")
DOMAIN_VERIFY_DNS_PORT = env_int("DOMAIN_VERIFY_DNS_PORT", 53)
BUILD_MEMORY_MB = env_int("BUILD_MEMORY_MB", 2048)
# CPU of each build step: a relative weight (1024 = one normal process; 0: no
# limit) and the CPUs it may run on ("0-1"; empty: all).
BUILD_CPU_SHARES = env_int("BUILD_CPU_SHARES", 512)
BUILD_CPUSET_CPUS = env("BUILD_CPUSET_CPUS", "")
BUILD_LOG_TAIL_LINES = 30
# Confined builds (docs/security.md, "Builds"): the Docker network every build
# step runs on, isolated like a team network ("none": no network at all; empty:
# the engine's default bridge, unconfined, never on a shared host).
BUILD_NETWORK = env("BUILD_NETWORK", "hakobune-builds")
# The cgroup each build runs in (one per build, under this path), which holds
# its pids and memory limits; empty: none, so no pids limit and no disk watch.
BUILD_CGROUP_PARENT = env("BUILD_CGROUP_PARENT", "/hakobune-builds")
BUILD_PIDS_LIMIT = env_int("BUILD_PIDS_LIMIT", 1024)
# What one build's steps may write to their image layers, in MiB (0: unwatched).
BUILD_DISK_MB = env_int("BUILD_DISK_MB", 10240)


def _repository(image: str) -> str:
    head, _, last = image.strip().split("@", 1)[0].rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


# The images a person's own Dockerfile may build on (FROM, COPY --from) beside
# Hakobune's stacks, the team's own images and scratch: patterns such as
# python:*, docker.io/library/*, ghcr.io/acme/*. Default: the registries'
# images the stacks use, any tag.
BUILD_ALLOWED_BASE_IMAGES = env_list(
    "BUILD_ALLOWED_BASE_IMAGES",
    ",".join(dict.fromkeys(f"{_repository(image)}:*" for image in STACK_IMAGES.values() if image.strip())),
)

# Image builders, chosen like the runtime backends: a service's images are made
# by its runtime backend's own builder when it has one (Cloud Run: Cloud Build),
# else by IMAGE_BUILDERS["local"], on this host's Docker Engine.
IMAGE_BUILDERS = {
    "local": {
        "BACKEND": "hakobune.worker.builders.local_docker.LocalDockerBuilder",
        "OPTIONS": {
            # No docker_url: the engine of DOCKER_HOST (and DOCKER_TLS_*), else its socket.
            "stack_images": {**STACK_IMAGES, **ADDON_IMAGES},
            "suite": STACK_DEBIAN_SUITE,
            "stack_variants": STACK_VARIANTS,
            "mirror": STACK_DEBIAN_MIRROR,
            "ca_bundle": BUILD_CA_BUNDLE,
            "stack_cache_dir": STACK_CACHE_DIR,
            "timeout": BUILD_TIMEOUT,
            "memory_mb": BUILD_MEMORY_MB,
            "cpu_shares": BUILD_CPU_SHARES,
            "cpuset_cpus": BUILD_CPUSET_CPUS,
            "instance": env("HAKOBUNE_INSTANCE", "hakobune"),
            "network": BUILD_NETWORK,
            "cgroup_parent": BUILD_CGROUP_PARENT,
            "pids_limit": BUILD_PIDS_LIMIT,
            "disk_mb": BUILD_DISK_MB,
            "allowed_base_images": BUILD_ALLOWED_BASE_IMAGES,
            "package_sources": PACKAGE_SOURCES,
        },
    },
}

# Secrets at rest (git tokens, later env var values) are encrypted with this
# key; empty: a key derived from SECRET_KEY.
ENCRYPTION_KEY = env("HAKOBUNE_ENCRYPTION_KEY", "")

# Source intake. Sources are fetched over https only; an admin may allow plain
# http for named hosts, and hosts that are private or loopback addresses
# (entries are "host" or "host:port").
SOURCE_HTTP_HOSTS = frozenset(env_list("SOURCE_HTTP_HOSTS", ""))
SOURCE_ALLOWED_HOSTS = frozenset(env_list("SOURCE_ALLOWED_HOSTS", ""))
GIT_TIMEOUT = env_int("GIT_TIMEOUT", 300)

# Notifications (docs/architecture.md, "Notifications"). The portal's own
# address, for the links in them. Their webhook and chat URLs pass the SSRF
# guard as git sources do: https only, public addresses only, except the hosts
# named here ("host" or "host:port": plain http allowed; private or loopback
# allowed). A sending waits NOTIFY_TIMEOUT_SECONDS at most for each of
# connecting and the answer, and is tried NOTIFY_MAX_ATTEMPTS times,
# NOTIFY_RETRY_SECONDS apart. A crash loop, high memory or failing requests
# alert once per NOTIFY_COOLDOWN_MINUTES per service; failing requests are
# counted over NOTIFY_ERROR_RATE_MINUTES once a service had
# NOTIFY_ERROR_RATE_MIN_REQUESTS. Alerts are kept NOTIFY_KEEP_DAYS.
PORTAL_URL = env("PORTAL_URL", f"http://localhost:{PORTAL_PORT}")
NOTIFY_HTTP_HOSTS = frozenset(env_list("NOTIFY_HTTP_HOSTS", ""))
NOTIFY_ALLOWED_HOSTS = frozenset(env_list("NOTIFY_ALLOWED_HOSTS", ""))
NOTIFY_TIMEOUT_SECONDS = env_int("NOTIFY_TIMEOUT_SECONDS", 10)
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 3)
NOTIFY_RETRY_SECONDS = env_int("NOTIFY_RETRY_SECONDS", 30)
NOTIFY_COOLDOWN_MINUTES = env_int("NOTIFY_COOLDOWN_MINUTES", 30)
NOTIFY_ERROR_RATE_MINUTES = env_int("NOTIFY_ERROR_RATE_MINUTES", 5)
NOTIFY_ERROR_RATE_MIN_REQUESTS = env_int("NOTIFY_ERROR_RATE_MIN_REQUESTS", 20)
NOTIFY_KEEP_DAYS = env_int("NOTIFY_KEEP_DAYS", 30)
# E-mail notifications go through Django's mail backend: SMTP by default
# (EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS,
# EMAIL_USE_SSL), or another named by EMAIL_BACKEND (its options then unused).
_EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
MAILERS = {
    "default": {
        "BACKEND": _EMAIL_BACKEND,
        "OPTIONS": {
            "host": env("EMAIL_HOST", "localhost"), "port": env_int("EMAIL_PORT", 25),
            "username": env("EMAIL_HOST_USER", ""), "password": env("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", False), "use_ssl": env_bool("EMAIL_USE_SSL", False),
            "timeout": NOTIFY_TIMEOUT_SECONDS,
        } if _EMAIL_BACKEND.endswith("smtp.EmailBackend") else {},
    },
}
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", f"hakobune@{BASE_DOMAIN}")

# The pipeline's crash safety (docs/architecture.md, "Crash safety"). A worker
# renews its lease on the step it runs every STEP_HEARTBEAT_SECONDS; a step
# whose lease is STEP_LEASE_SECONDS old (its worker died) is resumed by the
# sweeper, which runs every SWEEP_SECONDS and when a worker starts, at most
# STEP_MAX_RESUMES times; a step queued but not claimed for
# STEP_REQUEUE_SECONDS (its message lost) is queued again.
STEP_HEARTBEAT_SECONDS = env_int("STEP_HEARTBEAT_SECONDS", 5)
STEP_LEASE_SECONDS = env_int("STEP_LEASE_SECONDS", 30)
STEP_MAX_RESUMES = env_int("STEP_MAX_RESUMES", 3)
STEP_REQUEUE_SECONDS = env_int("STEP_REQUEUE_SECONDS", 60)
# Every task's time limit, in seconds: at it, the task is interrupted (a
# pipeline step then fails in words, and what it started is stopped); one that
# does not stop within TASK_KILL_GRACE more is killed with its worker process.
# The build's own limit (BUILD_TIMEOUT) is kept by the build's watch, which
# stops its containers; the step's limit leaves time around it for the stacks
# and the image's bookkeeping.
DEPLOY_TIMEOUT = env_int("DEPLOY_TIMEOUT", 900)
# The release phase (a Procfile's `release:` command, run once per new
# release before its instances start) is stopped after this many seconds and
# the deploy fails; the deploy step's own limit is longer by as much.
RELEASE_COMMAND_TIMEOUT = env_int("RELEASE_COMMAND_TIMEOUT", 300)
TASK_KILL_GRACE = 30
TASK_TIME_LIMITS = {
    "fetch_source": GIT_TIMEOUT + 120,
    "detect_stack": env_int("DETECT_TIMEOUT", 120),
    # A fetch and a detection, nothing built (the guided deploy's plan).
    "check_plan": GIT_TIMEOUT + env_int("DETECT_TIMEOUT", 120),
    "build_image": BUILD_TIMEOUT + 60,
    "deploy_release": DEPLOY_TIMEOUT + RELEASE_COMMAND_TIMEOUT,
    "start_release": DEPLOY_TIMEOUT,
    "destroy_service": 600,
    # Each of the team's services as destroy_service, one after another.
    "destroy_team": env_int("DESTROY_TEAM_TIMEOUT", 1800),
    # Every service of the team started again, one after another.
    "grow_team_network": env_int("DESTROY_TEAM_TIMEOUT", 1800),
    "rebuild_stack": env_int("STACK_BUILD_TIMEOUT", 1800),
    # Its image built from Debian when this host has none, then the start.
    "provision_addon": env_int("STACK_BUILD_TIMEOUT", 1800) + 120,
    # Connecting and the answer, each NOTIFY_TIMEOUT_SECONDS at most.
    "deliver_notification": 2 * NOTIFY_TIMEOUT_SECONDS + 30,
    # A dump, its upload, its download and its check, each BACKUP_TIMEOUT at most.
    "run_backup": 3 * BACKUP_TIMEOUT + 120,
    # The new add-on waited for, the check of the file again, the restore.
    "restore_backup": 3 * BACKUP_TIMEOUT + 120,
}
# Housekeeping and anything not named above.
TASK_DEFAULT_TIME_LIMIT = env_int("TASK_DEFAULT_TIME_LIMIT", 600)
CELERY_TASK_SOFT_TIME_LIMIT = TASK_DEFAULT_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = TASK_DEFAULT_TIME_LIMIT + TASK_KILL_GRACE
CELERY_TASK_ANNOTATIONS = {
    f"hakobune.worker.tasks.{name}": {"soft_time_limit": seconds, "time_limit": seconds + TASK_KILL_GRACE}
    for name, seconds in TASK_TIME_LIMITS.items()
}
# Redis gives a message that a worker took but never acknowledged (late
# acknowledgement: the worker died) to another worker after this long. Longer
# than any task may run, so a task still running is never delivered twice;
# the pipeline does not wait for it (the sweeper queues its steps again from
# the database), and a duplicate would be harmless there (claim()).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": max([*TASK_TIME_LIMITS.values(), TASK_DEFAULT_TIME_LIMIT]) + TASK_KILL_GRACE + 60,
}
# A deploy waits this long at most for another deploy of the same service.
DEPLOY_LOCK_WAIT = env_int("DEPLOY_LOCK_WAIT", 600)
# A proxy git goes through ("http://proxy:3128", "socks5://proxy:1080"); empty:
# git connects directly to the address the SSRF guard checked. The worker's own
# proxy variables (http_proxy, https_proxy, ALL_PROXY) never reach git. Through
# socks5:// git still connects to the checked address; through http(s):// or
# socks5h:// the proxy resolves the checked name itself (hakobune/worker/gitfetch.py).
SOURCE_GIT_PROXY = env("SOURCE_GIT_PROXY", "")
SOURCE_MAX_ARCHIVE_BYTES = env_int("SOURCE_MAX_ARCHIVE_BYTES", 200 * 1000 * 1000)
SOURCE_MAX_TOTAL_BYTES = env_int("SOURCE_MAX_TOTAL_BYTES", 1000 * 1000 * 1000)
SOURCE_MAX_ENTRIES = env_int("SOURCE_MAX_ENTRIES", 20_000)
SOURCE_MAX_RATIO = env_int("SOURCE_MAX_RATIO", 100)

# A service's defaults when it is created.
DEFAULT_SERVICE_CPU = float(env("DEFAULT_SERVICE_CPU", "0.5"))
DEFAULT_SERVICE_MEMORY_MB = env_int("DEFAULT_SERVICE_MEMORY_MB", 256)
DEFAULT_SERVICE_PORT = env_int("DEFAULT_SERVICE_PORT", 8080)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
