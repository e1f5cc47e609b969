"""Google Cloud as Hakobune talks to it: one project and region, signed in once
(a service-account key, application default credentials, or none against the
tests' fakes), with one client per API on its REST transport; and Google's
errors turned into something a person can act on (`_in_words`), including
Cloud Run's refusals about Secret Manager references and about the accounts
teams run and build as (tenants.py says whose each is).

The Cloud Run backend (serving) and the Cloud Build builder (building) both
stand on a GoogleCloud, the backend being one itself and the builder sharing
it, so they sign in once and use the same settings."""

from __future__ import annotations

import re

from ..base import RuntimeBackendError
from .tenants import BUILD, KIND_WORDS, RUNTIME, account_setup, secret_prefix, team_account

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_ENDPOINTS = {
    "monitoring": "https://monitoring.googleapis.com",
    "artifactregistry": "https://artifactregistry.googleapis.com",
    "iam": "https://iam.googleapis.com",
}
ROLE_FOR = {
    "run": "roles/run.admin",
    "cloudbuild": "roles/cloudbuild.builds.editor",
    "storage": "roles/storage.admin",
    "logging": "roles/logging.viewer",
    "monitoring": "roles/monitoring.viewer",
    "artifactregistry": "roles/artifactregistry.repoAdmin",
    "iam": "roles/iam.serviceAccountUser",
}
API_NAME = {
    "run": ("Cloud Run API", "run.googleapis.com"),
    "cloudbuild": ("Cloud Build API", "cloudbuild.googleapis.com"),
    "storage": ("Cloud Storage API", "storage.googleapis.com"),
    "logging": ("Cloud Logging API", "logging.googleapis.com"),
    "monitoring": ("Cloud Monitoring API", "monitoring.googleapis.com"),
    "artifactregistry": ("Artifact Registry API", "artifactregistry.googleapis.com"),
    "iam": ("Identity and Access Management (IAM) API", "iam.googleapis.com"),
}


class GoogleCloud:
    """The settings and clients shared by everything that calls Google for one
    project: OPTIONS project, region, repository, bucket, credentials,
    credentials_info, credentials_problem, settings_place, poll_interval,
    team_accounts and endpoints (see the package's docstring)."""

    def __init__(self, options: dict):
        self.options = options
        self.project = options.get("project") or ""
        self.region = options.get("region") or ""
        self.repository = options.get("repository") or "hakobune"
        self.bucket_name = options.get("bucket") or (f"{self.project}_cloudbuild" if self.project else "")
        # {team: {"runtime": email, "build": email}}: accounts staff named for a
        # team instead of the ones derived from its name (tenants.py).
        self.team_accounts = {team: dict(accounts) for team, accounts in (options.get("team_accounts") or {}).items()}
        self.poll_interval = float(options.get("poll_interval", 2.0))
        self.endpoints = dict(options.get("endpoints") or {})
        self._credentials = None
        self._clients: dict[str, object] = {}

    # -- what each team has of its own (tenants.py) ---------------------------

    def account(self, kind: str, team: str) -> str:
        """The service account `team`'s services (RUNTIME) or builds (BUILD)
        run as: the one staff named in the team's settings, else the one
        derived from the team's name in the project in effect."""
        return team_account(kind, team, self.project, self.team_accounts)

    def runtime_account(self, team: str) -> str:
        return self.account(RUNTIME, team)

    def build_account(self, team: str) -> str:
        return self.account(BUILD, team)

    @staticmethod
    def secret_prefix(team: str) -> str:
        """How the names of the secrets `team`'s services may read begin."""
        return secret_prefix(team)

    def account_setup(self, kind: str, team: str) -> str:
        return account_setup(
            kind, team, self.account(kind, team), deployer=self.identity, project=self.project,
            bucket=self.bucket_name, repository=self.repository, region=self.region,
        )

    def _where(self, variable: str, what: str) -> str:
        """Where a person changes a setting: an environment variable of the
        platform, or the staff's Cloud Run settings in the portal."""
        place = self.options.get("settings_place") or ""
        return f"the {what} in {place}" if place else variable

    def _require_config(self) -> None:
        missing = [
            self._where(variable, what)
            for variable, what, value in (
                ("CLOUDRUN_PROJECT", "project", self.project),
                ("CLOUDRUN_REGION", "region", self.region),
            )
            if not value
        ]
        if missing:
            raise RuntimeBackendError(f"the Cloud Run target is not configured: set {' and '.join(missing)} (see .env.example).")

    @property
    def credentials(self):
        if self._credentials is None:
            self._require_config()
            source = self.options.get("credentials") or ""
            info = self.options.get("credentials_info")
            if self.options.get("credentials_problem"):
                raise RuntimeBackendError(self.options["credentials_problem"])
            if info:
                from google.oauth2 import service_account

                try:
                    credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
                except (ValueError, KeyError, TypeError) as exc:
                    raise RuntimeBackendError(
                        f"the service-account key in {self._where('the portal', 'Cloud Run settings')} cannot be used "
                        f"({exc}); upload the key JSON again as Google gave it."
                    )
                self._credentials = self._signed_in(credentials)
            elif source == "anonymous":
                from google.auth.credentials import AnonymousCredentials

                self._credentials = AnonymousCredentials()
            elif source:
                from google.oauth2 import service_account

                try:
                    credentials = service_account.Credentials.from_service_account_file(source, scopes=SCOPES)
                except (OSError, ValueError) as exc:
                    raise RuntimeBackendError(
                        f"the service-account key {source} (CLOUDRUN_CREDENTIALS) cannot be read: {exc}"
                    )
                self._credentials = self._signed_in(credentials)
            else:
                import google.auth
                from google.auth.exceptions import DefaultCredentialsError

                try:
                    self._credentials, _ = google.auth.default(scopes=SCOPES)
                except DefaultCredentialsError:
                    raise RuntimeBackendError(
                        "no Google Cloud credentials: upload a service-account key in the portal (Cloud Run, staff "
                        "only), set CLOUDRUN_CREDENTIALS to a key file, or give this host application default "
                        "credentials (gcloud auth application-default login)."
                    )
        return self._credentials

    @staticmethod
    def _signed_in(credentials):
        """Gets the key its first access token now, so that a key Google refuses
        (deleted, disabled, of another project's deleted account) is said in
        words here rather than failing deep inside the first API call."""
        from google.auth import exceptions as auth_errors
        from google.auth.transport.requests import Request

        try:
            credentials.refresh(Request())
        except auth_errors.RefreshError as exc:
            email = getattr(credentials, "service_account_email", "the service account")
            raise RuntimeBackendError(
                f"Google refused the key of {email} ({exc}). The key or the account may have been deleted or "
                "disabled; create a new key (IAM → Service accounts → Keys) and upload it."
            )
        except auth_errors.TransportError as exc:
            raise RuntimeBackendError(f"Google's sign-in could not be reached ({exc}); try again.", permanent=False)
        return credentials

    @property
    def identity(self) -> str:
        """Who Hakobune calls Google as, in words."""
        return getattr(self.credentials, "service_account_email", None) or "the account Hakobune uses"

    def _options_for(self, api: str):
        from google.api_core.client_options import ClientOptions

        endpoint = self.endpoints.get(api)
        return ClientOptions(api_endpoint=endpoint) if endpoint else None

    def _client(self, api: str):
        if api in self._clients:
            return self._clients[api]
        credentials = self.credentials
        if api == "services":
            from google.cloud import run_v2

            client = run_v2.ServicesClient(credentials=credentials, transport="rest", client_options=self._options_for("run"))
        elif api == "revisions":
            from google.cloud import run_v2

            client = run_v2.RevisionsClient(credentials=credentials, transport="rest", client_options=self._options_for("run"))
        elif api == "cloudbuild":
            from google.cloud.devtools import cloudbuild_v1

            client = cloudbuild_v1.CloudBuildClient(
                credentials=credentials, transport="rest", client_options=self._options_for("cloudbuild")
            )
        elif api == "storage":
            from google.cloud import storage

            client = storage.Client(
                project=self.project, credentials=credentials, client_options=self._options_for("storage")
            )
        elif api == "logging":
            client = _reading_logging_client()(
                project=self.project, credentials=credentials, _use_grpc=False, client_options=self._options_for("logging")
            )
        elif api == "session":
            from google.auth.transport.requests import AuthorizedSession

            client = AuthorizedSession(credentials)
        else:  # pragma: no cover
            raise KeyError(api)
        self._clients[api] = client
        return client

    def _endpoint(self, api: str) -> str:
        return (self.endpoints.get(api) or DEFAULT_ENDPOINTS[api]).rstrip("/")

    @property
    def location(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def image_path(self, name: str) -> str:
        """An image in the Artifact Registry repository: `name` is "team/service[:tag]"."""
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.repository}/{name}"

    def _json_or_raise(self, response, api: str, *, raw: bool = False):
        from google.api_core import exceptions as gexc

        if response.status_code >= 400:
            raise _in_words(gexc.from_http_response(response), api, self)
        return response.text if raw else response.json()


def _reading_logging_client():
    """Cloud Logging's client for reading only. The library makes a Logger for
    each log an entry it reads belongs to, and a Logger made without a
    resource asks the metadata server (metadata.google.internal) where this
    process runs; Hakobune writes nothing, so its loggers get a resource and
    nothing is asked."""
    from google.cloud import logging as cloud_logging
    from google.cloud.logging_v2.resource import Resource

    class ReadingClient(cloud_logging.Client):
        def logger(self, name, *, labels=None, resource=None):
            return super().logger(name, labels=labels, resource=resource or Resource(type="global", labels={}))

    return ReadingClient


def _in_words(exc, api: str, backend: GoogleCloud, *, image: str = "", team: str = "") -> RuntimeBackendError:
    """A Google API error as something a person can act on; `team`, whose
    deploy or build it was, names that team's accounts."""
    from google.api_core import exceptions as gexc

    message = getattr(exc, "message", None) or str(exc)
    reason = getattr(exc, "reason", None) or ""
    metadata = getattr(exc, "metadata", None) or {}
    project = backend.project
    lowered = message.lower()
    secret = _secret_problem(message, backend)
    if secret is not None:
        return secret
    account = _account_problem(message, backend, team)
    if account is not None:
        return account
    if reason in ("SERVICE_DISABLED", "ACCESS_NOT_CONFIGURED") or "has not been used in project" in lowered or (
        "is disabled" in lowered and "api" in lowered
    ):
        service = metadata.get("service") or API_NAME.get(api, ("", f"{api}.googleapis.com"))[1]
        title = next((t for t, host in API_NAME.values() if host == service), service)
        return RuntimeBackendError(
            f"enable the {title} in project {project}: "
            f"https://console.cloud.google.com/apis/library/{service}?project={project} "
            f"(or run: gcloud services enable {service} --project {project}), then deploy again.",
            permanent=True,
        )
    if isinstance(exc, gexc.PermissionDenied) or isinstance(exc, gexc.Forbidden) or isinstance(exc, gexc.Unauthorized):
        permission = metadata.get("permission") or _permission_in(message)
        prefix = (permission.split(".", 1)[0] if permission else api).lower()
        if permission.lower() == "iam.serviceaccounts.actas":
            prefix = "iam"
        role = ROLE_FOR.get(prefix, ROLE_FOR.get(api, "roles/editor"))
        who = backend.identity
        needs = f" (it lacks {permission})" if permission else ""
        return RuntimeBackendError(
            f"permission denied: {who} needs {role} on project {project}{needs}. "
            f"Grant it: gcloud projects add-iam-policy-binding {project} --member=serviceAccount:<its email> --role={role}",
            permanent=True,
        )
    if isinstance(exc, gexc.ResourceExhausted) or "quota" in lowered:
        return RuntimeBackendError(
            f"a Google Cloud quota of project {project} is used up: {message} "
            f"Wait a little and deploy again, or ask for more quota at "
            f"https://console.cloud.google.com/iam-admin/quotas?project={project}",
            permanent=False,
        )
    if "location" in lowered or "region" in lowered:
        if isinstance(exc, (gexc.InvalidArgument, gexc.NotFound, gexc.BadRequest)):
            return RuntimeBackendError(
                f"{backend.region!r} is not a Cloud Run region this project can use ({message}). "
                f"Set {backend._where('CLOUDRUN_REGION', 'region')} to one like europe-west1 or us-central1.",
                permanent=True,
            )
    if "image" in lowered and ("not found" in lowered or "not exist" in lowered or "manifest unknown" in lowered):
        return RuntimeBackendError(
            f"Cloud Run cannot find the image {image or ''} in Artifact Registry ({message}). Build the service again.",
            permanent=True,
        )
    if isinstance(exc, (gexc.ServiceUnavailable, gexc.InternalServerError, gexc.DeadlineExceeded, gexc.TooManyRequests)):
        return RuntimeBackendError(f"Google Cloud did not answer in time ({message}); deploy again.", permanent=False)
    return RuntimeBackendError(f"Google Cloud refused: {message}", permanent=not isinstance(exc, gexc.ServerError))


def _permission_in(message: str) -> str:
    match = re.search(r"\b((?:run|cloudbuild|storage|logging|monitoring|artifactregistry|iam)\.[A-Za-z]+\.[A-Za-z]+)\b", message)
    return match.group(1) if match else ""


# -- Secret Manager references and service accounts in Google's refusals ----------------

_SECRET_IN_MESSAGE = re.compile(
    r"projects/(?P<project>[^/\s]+)/secrets/(?P<name>[A-Za-z0-9_-]+)(?:/versions/(?P<version>[A-Za-z0-9]+))?"
)
_RUNS_AS_IN_MESSAGE = re.compile(r"service account (?P<account>[^\s]+@[^\s]+?)\.?(?:\s|$)")
_ACCOUNT_IN_MESSAGE = re.compile(
    r"service ?account (?:projects/[^/\s]+/serviceAccounts/)?(?P<account>[^\s'\"()]+@[^\s'\"()]+?)[.,]?(?:[\s'\")]|$)", re.I
)


def _account_problem(message: str, backend: GoogleCloud, team: str) -> RuntimeBackendError | None:
    """Google's refusal to run or build as a service account that does not
    exist, or that Hakobune may not act as (Google says both the same way)."""
    lowered = message.lower()
    found = _ACCOUNT_IN_MESSAGE.search(message)
    if not found or not ("actas" in lowered or "does not exist" in lowered or "not found" in lowered):
        return None
    email = found["account"]
    kinds = [kind for kind in (RUNTIME, BUILD) if team and backend.account(kind, team) == email]
    if kinds:
        kind = kinds[0]
        return RuntimeBackendError(
            f"team {team}'s {KIND_WORDS[kind]} run as {email}, which does not exist or which "
            f"{backend.identity} may not act as. To set it up, {backend.account_setup(kind, team)}. "
            "Then deploy again (staff can try it first with Check access on the Cloud Run page).",
            permanent=True,
        )
    return RuntimeBackendError(
        f"{backend.identity} may not act as the service account {email}, or it does not exist: create it, or grant "
        f"roles/iam.serviceAccountUser on it (gcloud iam service-accounts add-iam-policy-binding {email} "
        f"--member=serviceAccount:<Hakobune's account> --role=roles/iam.serviceAccountUser).",
        permanent=True,
    )


def _secret_problem(message: str, backend: GoogleCloud) -> RuntimeBackendError | None:
    """Cloud Run's refusals about a referenced secret, as what to do."""
    found = _SECRET_IN_MESSAGE.search(message)
    lowered = message.lower()
    if not found or "secret" not in lowered:
        return None
    name, project, version = found["name"], found["project"], found["version"] or "latest"
    if "permission" in lowered or "denied" in lowered:
        runs_as = _RUNS_AS_IN_MESSAGE.search(message)
        account = runs_as["account"] if runs_as else "your team's runtime service account"
        return RuntimeBackendError(
            f"your service runs as {account}, which may not read the secret {name} in Secret Manager. "
            f"Grant it the Secret Manager Secret Accessor role: gcloud secrets add-iam-policy-binding {name} "
            f"--project {project} --member=serviceAccount:{account} --role=roles/secretmanager.secretAccessor, "
            "then deploy again.",
            permanent=True,
        )
    if "not found" in lowered or "not exist" in lowered:
        return RuntimeBackendError(
            f"Secret Manager has no secret {name} (version {version}) in project {project}. Create it "
            f"(printf %s VALUE | gcloud secrets create {name} --project {project} --data-file=-) or correct the "
            "reference in the service's environment variables, then deploy again.",
            permanent=True,
        )
    return None
