"""The Cloud Run runtime: Cloud Storage holds the source, Cloud Build builds and
pushes the image to Artifact Registry, and Cloud Run (v2) serves it. Logs come
from Cloud Logging and metrics from Cloud Monitoring.

Every call goes through Google's client libraries on their REST transport
(Cloud Run, Cloud Build, Cloud Storage, Cloud Logging). Two APIs have no REST
transport in their Python library (Cloud Monitoring, and Artifact Registry
which has no library here): those are plain REST calls through google-auth's
AuthorizedSession, with Monitoring's own message types for the answer.

The package, by concern:
    client.py     GoogleCloud: settings, credentials, clients, endpoints, each team's
                  accounts; Google's errors in words (_in_words)
    tenants.py    what each team has of its own: runtime and build service accounts,
                  the prefix of its Secret Manager secrets, and the gcloud commands
                  that set them up
    build.py      CloudBuildBuilder, the image builder (image_builder() below)
    serve.py      deploy, traffic, stop/start, destroy, status, revisions
    observe.py    logs and metrics

OPTIONS (settings.RUNTIME_BACKENDS["cloudrun"]["OPTIONS"]):
    project, region, repository       the GCP project, Cloud Run region, Artifact Registry repository
    credentials                       path to a service-account key JSON; "" = application default
                                      credentials; "anonymous" = none (tests against fakes)
    credentials_info                  a service-account key as parsed JSON (a key staff stored,
                                      encrypted, in the portal); wins over `credentials`
    settings_place                    where a person changes these settings, for error messages
                                      ("" = the CLOUDRUN_* environment variables)
    bucket                            source and build-log bucket (default: <project>_cloudbuild)
    builder                           "dockerfile" (the plan's Dockerfile) or "buildpacks"
    stack_images                      {language: registry image} Cloud Build builds plans on
    min_instances, concurrency, request_timeout, ingress
    team_accounts                     {team: {"runtime": email, "build": email}}: accounts staff
                                      named for a team; otherwise each team runs and builds as
                                      accounts derived from its name (tenants.py)
    poll_interval, build_timeout, deploy_timeout   seconds
    endpoints                         {api: "http://127.0.0.1:PORT"}: only for tests against fakes

Nothing here knows Django; it takes and returns the plain values of base.py."""

from __future__ import annotations

from collections.abc import Callable

import requests

from ..base import RuntimeBackend, RuntimeBackendError
from .build import CloudBuildBuilder
from .client import GoogleCloud, _in_words
from .observe import Observing
from .serve import LABEL_TEAM, Serving, cloud_run_resources
from .tenants import BUILD, KIND_WORDS, RUNTIME, account_email, secret_prefix, team_secret

__all__ = [
    "BUILD",
    "RUNTIME",
    "CloudBuildBuilder",
    "CloudRunBackend",
    "GoogleCloud",
    "account_email",
    "cloud_run_resources",
    "secret_prefix",
    "team_secret",
]


class CloudRunBackend(Serving, Observing, GoogleCloud, RuntimeBackend):
    # The staff's Cloud Run settings in the portal layer over OPTIONS, per team
    # (hakobune.platform.services.cloud_settings).
    layered_settings = True
    capabilities = frozenset(
        {"logs", "metrics", "stop_start", "remote_build", "traffic_split", "revisions", "secret_env", "autoscaling",
         "under_the_hood"}
    )

    def __init__(self, alias, **options):
        RuntimeBackend.__init__(self, alias, **options)
        GoogleCloud.__init__(self, options)
        self.min_instances = int(options.get("min_instances") or 0)
        self.concurrency = int(options.get("concurrency") or 80)
        self.request_timeout = int(options.get("request_timeout") or 300)
        self.ingress = options.get("ingress") or "all"
        self.deploy_timeout = float(options.get("deploy_timeout", 600))
        self._image_builder: CloudBuildBuilder | None = None

    def image_builder(self) -> CloudBuildBuilder:
        """Cloud Build, with this backend's settings, credentials and clients:
        Cloud Run runs images from Artifact Registry, never this host's."""
        if self._image_builder is None:
            self._image_builder = CloudBuildBuilder(self.alias, cloud=self, **self.options)
        return self._image_builder

    def check_access(self, teams: tuple[str, ...] | list[str] = ()) -> list[tuple[bool, str]]:
        """Reads (changes nothing) what a deploy needs, with these settings:
        Cloud Run's services in the region, Cloud Build's builds, the bucket
        and the Artifact Registry repository, and for each of `teams` the
        accounts its services and builds run as. Returns (fine, in words) for
        each; raises RuntimeBackendError when it cannot sign in at all."""
        from google.api_core import exceptions as gexc

        self._require_config()
        who = self.identity  # signs in first: a refused key is said once
        checks = []

        def check(api: str, step: Callable[[], str]) -> None:
            try:
                checks.append((True, step()))
            except gexc.GoogleAPICallError as exc:
                checks.append((False, _in_words(exc, api, self).message))
            except RuntimeBackendError as exc:
                checks.append((False, exc.message))
            except requests.RequestException as exc:
                checks.append((False, f"Google Cloud could not be reached ({exc})."))

        def run() -> str:
            found = list(self._client("services").list_services(parent=self.location))
            ours = sum(1 for service in found if LABEL_TEAM in dict(service.labels))
            return (
                f"Hakobune reached Cloud Run in project {self.project}, region {self.region}, as {who}: "
                f"{len(found)} service{'s' if len(found) != 1 else ''} there, {ours} of them Hakobune's."
            )

        def cloudbuild() -> str:
            from google.cloud.devtools import cloudbuild_v1

            request = cloudbuild_v1.ListBuildsRequest(project_id=self.project, page_size=1)
            next(iter(self._client("cloudbuild").list_builds(request=request)), None)
            return "Cloud Build answers: builds can start."

        def bucket() -> str:
            if self._client("storage").lookup_bucket(self.bucket_name) is None:
                return f"The bucket gs://{self.bucket_name} does not exist yet; the first deploy makes it."
            return f"The bucket gs://{self.bucket_name} is there for sources and build logs."

        def repository() -> str:
            url = f"{self._endpoint('artifactregistry')}/v1/{self.location}/repositories/{self.repository}"
            response = self._client("session").get(url, timeout=30)
            if response.status_code == 404:
                raise RuntimeBackendError(
                    f"Artifact Registry has no repository {self.repository} in {self.region}: create it "
                    f"(gcloud artifacts repositories create {self.repository} --repository-format=docker "
                    f"--location={self.region} --project={self.project}) or set "
                    f"{self._where('CLOUDRUN_REPOSITORY', 'repository')} to one that exists."
                )
            body = self._json_or_raise(response, "artifactregistry")
            if body.get("format") not in (None, "DOCKER"):
                raise RuntimeBackendError(f"The repository {self.repository} holds {body['format']} packages, not images.")
            return f"The Artifact Registry repository {self.repository} in {self.region} takes images."

        check("run", run)
        check("cloudbuild", cloudbuild)
        check("storage", bucket)
        check("artifactregistry", repository)
        for team in teams:
            for kind in (RUNTIME, BUILD):
                check("iam", lambda: self._check_account(kind, team))
        return checks

    def _check_account(self, kind: str, team: str) -> str:
        """That a team's runtime or build account exists, is enabled, and that
        Hakobune may act as it (deploy, or start builds, as it)."""
        email = self.account(kind, team)
        url = f"{self._endpoint('iam')}/v1/projects/-/serviceAccounts/{email}"
        response = self._client("session").get(url, timeout=30)
        missing = (
            f"Team {team}'s {KIND_WORDS[kind]} run as {email}, which does not exist or which {self.identity} may not "
            f"see. To set it up, {self.account_setup(kind, team)}."
        )
        if response.status_code in (403, 404):
            raise RuntimeBackendError(missing)
        found = self._json_or_raise(response, "iam")
        if found.get("disabled"):
            raise RuntimeBackendError(
                f"Team {team}'s {KIND_WORDS[kind]} run as {email}, which is disabled: gcloud iam service-accounts "
                f"enable {email}"
            )
        response = self._client("session").post(
            f"{url}:testIamPermissions", json={"permissions": ["iam.serviceAccounts.actAs"]}, timeout=30
        )
        if "iam.serviceAccounts.actAs" not in self._json_or_raise(response, "iam").get("permissions", []):
            raise RuntimeBackendError(
                f"Team {team}'s {KIND_WORDS[kind]} run as {email}, which {self.identity} may not act as. "
                f"To set it up, {self.account_setup(kind, team)}."
            )
        if kind == RUNTIME:
            return (
                f"Team {team}'s services run as {email}; Hakobune lets them name only the secrets of project "
                f"{self.project} whose names start with {secret_prefix(team)}."
            )
        return f"Team {team}'s builds run as {email}."

