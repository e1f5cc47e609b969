"""The Cloud Run runtime: Cloud Storage holds the source, Cloud Build builds and
pushes the image to Artifact Registry, and Cloud Run (v2) serves it. Logs come
from Cloud Logging and metrics from Cloud Monitoring.

Every call goes through Google's client libraries on their REST transport
(Cloud Run, Cloud Build, Cloud Storage, Cloud Logging). Two APIs have no REST
transport in their Python library (Cloud Monitoring, and Artifact Registry
which has no library here): those are plain REST calls through google-auth's
AuthorizedSession, with Monitoring's own message types for the answer.

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
    min_instances, concurrency, request_timeout, ingress, service_account
    poll_interval, build_timeout      seconds
    endpoints                         {api: "http://127.0.0.1:PORT"}: only for tests against fakes

Nothing here knows Django; it takes and returns the plain values of base.py."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tarfile
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from .base import (
    DeployResult,
    DeploySpec,
    Instance,
    LogLine,
    MetricSample,
    RuntimeBackend,
    RuntimeBackendError,
    ServiceRef,
    ServiceStatus,
)

log = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_ENDPOINTS = {
    "monitoring": "https://monitoring.googleapis.com",
    "artifactregistry": "https://artifactregistry.googleapis.com",
}
GENERATED_DOCKERFILE = ".hakobune/Dockerfile"
BUILDPACKS_BUILDER = "gcr.io/buildpacks/builder:latest"
PACK_IMAGE = "gcr.io/k8s-skaffold/pack"
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
LABEL_TEAM = "hakobune-team"
LABEL_SERVICE = "hakobune-service"
LABEL_RELEASE = "hakobune-release"
LABEL_CONFIG = "hakobune-config"
LABEL_STOPPED = "hakobune-stopped"
INVOKER = "roles/run.invoker"
PUBLIC = "allUsers"
INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
# Which role grants what a failed call needed, by the permission's service.
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
}
_SERVICE_ID = re.compile(r"[^a-z0-9-]")


class CloudRunBackend(RuntimeBackend):
    # The staff's Cloud Run settings in the portal layer over OPTIONS, per team
    # (hakobune.platform.services.cloud_settings).
    layered_settings = True
    capabilities = frozenset(
        {"logs", "metrics", "stop_start", "remote_build", "traffic_split", "revisions", "secret_env", "autoscaling"}
    )

    def __init__(self, alias, **options):
        super().__init__(alias, **options)
        self.project = options.get("project") or ""
        self.region = options.get("region") or ""
        self.repository = options.get("repository") or "hakobune"
        self.bucket_name = options.get("bucket") or (f"{self.project}_cloudbuild" if self.project else "")
        self.builder = options.get("builder") or "dockerfile"
        self.min_instances = int(options.get("min_instances") or 0)
        self.concurrency = int(options.get("concurrency") or 80)
        self.request_timeout = int(options.get("request_timeout") or 300)
        self.ingress = options.get("ingress") or "all"
        self.service_account = options.get("service_account") or ""
        self.poll_interval = float(options.get("poll_interval", 2.0))
        self.build_timeout = float(options.get("build_timeout", 1200))
        self.deploy_timeout = float(options.get("deploy_timeout", 600))
        self.endpoints = dict(options.get("endpoints") or {})
        self._credentials = None
        self._clients: dict[str, object] = {}

    # -- clients ----------------------------------------------------------------

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
            from google.cloud import logging as cloud_logging

            client = cloud_logging.Client(
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

    # -- names ------------------------------------------------------------------

    @property
    def location(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @staticmethod
    def service_id(ref: ServiceRef) -> str:
        """The Cloud Run service's id: at most 49 of [a-z0-9-], starting with a
        letter; long names keep a hash of the whole so they stay distinct."""
        raw = _SERVICE_ID.sub("-", f"{ref.team}-{ref.service}".lower())
        name = raw if raw[:1].isalpha() else f"s-{raw}"
        if len(name) > 49:
            digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
            name = f"{name[:40].rstrip('-')}-{digest}"
        return name

    def service_name(self, ref: ServiceRef) -> str:
        return f"{self.location}/services/{self.service_id(ref)}"

    def image_base(self, ref: ServiceRef) -> str:
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.repository}/{ref.team}/{ref.service}"

    @staticmethod
    def secret_reference(reference: str) -> str:
        """A Secret Manager reference as stored ("secret:version"); ValueError in words."""
        return normalize_secret_ref(reference)

    def check_access(self) -> list[tuple[bool, str]]:
        """Reads (changes nothing) what a deploy needs, with these settings:
        Cloud Run's services in the region, Cloud Build's builds, the bucket
        and the Artifact Registry repository. Returns (fine, in words) for
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
        return checks

    # -- build (Cloud Build) ----------------------------------------------------

    def build(
        self,
        source_archive: Path,
        plan_dockerfile: str | None,
        image_name: str,
        log: Callable[[str], None],
        *,
        dockerfile_path: str = "Dockerfile",
        buildpacks: bool | None = None,
        start_command: str = "",
    ) -> str:
        """Builds `source_archive` (.tar.gz or .zip whose top is the app) in
        Cloud Build and pushes it to Artifact Registry as `image_name`
        ("team/service:tag"); returns the pushed image as name@digest.

        With `plan_dockerfile` the plan's Dockerfile is written into the source
        and built; with None the app's own `dockerfile_path`; with buildpacks
        (default: the backend's `builder` option) Google's buildpacks builder,
        told `start_command` as GOOGLE_ENTRYPOINT when there is one."""
        from google.api_core import exceptions as gexc
        from google.cloud.devtools import cloudbuild_v1

        self._require_config()
        use_buildpacks = self.builder == "buildpacks" if buildpacks is None else buildpacks
        image = f"{self.region}-docker.pkg.dev/{self.project}/{self.repository}/{image_name}"
        upload = _repack(Path(source_archive), None if use_buildpacks else plan_dockerfile)
        try:
            digest = hashlib.sha256(upload.getvalue()).hexdigest()[:16]
            object_name = f"hakobune/sources/{image_name.replace(':', '/').replace('/', '-')}-{digest}.tar.gz"
            log(f"Uploading the source to gs://{self.bucket_name}/{object_name}")
            self._upload(object_name, upload)
        finally:
            upload.close()

        if use_buildpacks:
            log(f"Building in Cloud Build with Google's buildpacks ({BUILDPACKS_BUILDER})")
            pack = ["build", image, "--builder", BUILDPACKS_BUILDER, "--network", "cloudbuild", "--path", "."]
            if start_command:
                pack += ["--env", f"GOOGLE_ENTRYPOINT={start_command}"]
            steps = [cloudbuild_v1.BuildStep(name=PACK_IMAGE, entrypoint="pack", args=pack)]
        else:
            dockerfile = GENERATED_DOCKERFILE if plan_dockerfile else (dockerfile_path or "Dockerfile")
            log(f"Building in Cloud Build with {'the plan' if plan_dockerfile else 'your'} Dockerfile ({dockerfile})")
            steps = [
                cloudbuild_v1.BuildStep(
                    name=DOCKER_BUILDER, args=["build", "--network", "cloudbuild", "-t", image, "-f", dockerfile, "."]
                )
            ]
        logs_prefix = "hakobune/build-logs"
        build = cloudbuild_v1.Build(
            source=cloudbuild_v1.Source(
                storage_source=cloudbuild_v1.StorageSource(bucket=self.bucket_name, object_=object_name)
            ),
            steps=steps,
            images=[image],
            logs_bucket=f"gs://{self.bucket_name}/{logs_prefix}",
            timeout=timedelta(seconds=self.build_timeout),
            tags=["hakobune"],
        )
        client = self._client("cloudbuild")
        try:
            operation = client.create_build(project_id=self.project, build=build)
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "cloudbuild", self)
        build_id = operation.metadata.build.id if operation.metadata else ""
        log(f"Cloud Build {build_id} started")
        reader = _LogReader(self._client("storage").bucket(self.bucket_name), f"{logs_prefix}/log-{build_id}.txt", log)
        deadline = time.monotonic() + self.build_timeout + 60
        try:
            while not operation.done():
                reader.read()
                if time.monotonic() > deadline:
                    raise RuntimeBackendError(
                        f"Cloud Build {build_id} did not end within {self.build_timeout:.0f} s", permanent=False
                    )
                time.sleep(self.poll_interval)
            reader.read()
            result = client.get_build(project_id=self.project, id=build_id)
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "cloudbuild", self)
        status = cloudbuild_v1.Build.Status(result.status).name
        if status != "SUCCESS":
            detail = result.status_detail or f"the build ended {status}"
            raise RuntimeBackendError(
                f"Cloud Build {build_id} failed: {detail}. Its log is above; fix the error and deploy again.",
                permanent=status in ("FAILURE", "TIMEOUT"),
                log_tail=reader.tail,
            )
        for built in result.results.images:
            if built.name == image and built.digest:
                return f"{image.rsplit(':', 1)[0]}@{built.digest}"
        return image

    def _upload(self, object_name: str, data: io.BytesIO) -> None:
        from google.api_core import exceptions as gexc

        bucket = self._client("storage").bucket(self.bucket_name)
        for attempt in range(2):
            data.seek(0)
            try:
                bucket.blob(object_name).upload_from_file(data, content_type="application/gzip")
                return
            except gexc.NotFound:
                if attempt:
                    raise RuntimeBackendError(
                        f"the bucket gs://{self.bucket_name} ({self._where('CLOUDRUN_BUCKET', 'bucket')}) does not exist"
                    )
                try:  # like gcloud: the staging bucket is made on first use
                    self._client("storage").create_bucket(self.bucket_name, location=self.region)
                except gexc.Conflict:
                    pass
                except gexc.GoogleAPICallError as exc:
                    raise _in_words(exc, "storage", self)
            except gexc.GoogleAPICallError as exc:
                raise _in_words(exc, "storage", self)

    def reserved(self, *, cpu, memory_mb, instances, min_instances=None, max_instances=None):
        """Cloud Run gives whole CPUs and at least 512 MiB, up to the most instances."""
        count = max_instances if max_instances is not None else max(instances, min_instances or 0, 1)
        cpus, memory = cloud_run_resources(cpu, memory_mb)
        return float(cpus) * count, int(memory.removesuffix("Mi")) * count

    # -- deploy (Cloud Run) -----------------------------------------------------

    def deploy(self, spec: DeploySpec) -> DeployResult:
        from google.api_core import exceptions as gexc

        self._require_config()
        ref = spec.ref
        name = self.service_name(ref)
        fingerprint = _fingerprint(spec, self)
        services = self._client("services")
        try:
            try:
                existing = services.get_service(name=name)
            except gexc.NotFound:
                existing = None
            if existing is not None:
                self._check_owner(existing, ref)
                earlier = self._revision_with(name, fingerprint)
                if earlier:
                    # A rollback (or a retried deploy): the revision that ran this
                    # image with this configuration still exists; move traffic to it.
                    if LABEL_STOPPED not in dict(existing.labels):
                        existing.ingress = INGRESS.get(spec.ingress or self.ingress, INGRESS["all"])
                    service = self._set_traffic(existing, {earlier: 100})
                    self._set_public(name, spec.public)
                    return self._result(service, earlier, reused=True)
            service = self._service_message(spec, name, fingerprint, existing)
            if existing is None:
                operation = services.create_service(parent=self.location, service=service, service_id=self.service_id(ref))
            else:
                operation = services.update_service(service=service)
            service = self._wait(operation, self.deploy_timeout, "run")
            revision = service.latest_ready_revision.rsplit("/", 1)[-1]
            created = service.latest_created_revision.rsplit("/", 1)[-1]
            if not revision or (created and created != revision):
                raise RuntimeBackendError(_not_ready(service, self), log_tail=self._revision_tail(ref, created))
            self._set_public(name, spec.public)
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self, image=spec.image)
        return self._result(service, revision)

    def _result(self, service, revision: str, *, reused: bool = False) -> DeployResult:
        state = {"revision": revision, "service": service.name, "url": service.uri}
        if reused:
            state["reused"] = True
        return DeployResult(url=service.uri, instances=[Instance(id=revision, name=revision, state="serving")], state=state)

    def _check_owner(self, service, ref: ServiceRef) -> None:
        labels = dict(service.labels)
        if labels.get(LABEL_TEAM, ref.team) != ref.team or labels.get(LABEL_SERVICE, ref.service) != ref.service:
            raise RuntimeBackendError(
                f"the Cloud Run service {self.service_id(ref)} belongs to {labels.get(LABEL_TEAM)}/"
                f"{labels.get(LABEL_SERVICE)}; rename this service."
            )

    def _service_message(self, spec: DeploySpec, name: str, fingerprint: str, existing):
        from google.cloud import run_v2

        cpu, memory = cloud_run_resources(spec.cpu, spec.memory_mb)
        labels = {LABEL_TEAM: spec.team, LABEL_SERVICE: spec.service}
        env = [run_v2.EnvVar(name=key, value=value) for key, value in sorted(spec.env.items()) if key != "PORT"]
        for key, reference in sorted(spec.secret_env.items()):
            secret, version = parse_secret_ref(reference)
            selector = run_v2.SecretKeySelector(secret=secret, version=version)
            env.append(run_v2.EnvVar(name=key, value_source=run_v2.EnvVarSource(secret_key_ref=selector)))
        container = run_v2.Container(
            image=spec.image,
            env=env,
            resources=run_v2.ResourceRequirements(limits={"cpu": cpu, "memory": memory}, cpu_idle=True),
            ports=[run_v2.ContainerPort(name="http1", container_port=spec.port)],
            startup_probe=run_v2.Probe(
                http_get=run_v2.HTTPGetAction(path=spec.health_check_path or "/", port=spec.port),
                period_seconds=3,
                failure_threshold=20,
            )
            if spec.health_check_path not in ("", "/")
            else None,
        )
        minimum = spec.min_instances if spec.min_instances is not None else self.min_instances
        maximum = spec.max_instances if spec.max_instances is not None else max(spec.instances, minimum, 1)
        template = run_v2.RevisionTemplate(
            labels={**labels, LABEL_RELEASE: str(spec.release_id), LABEL_CONFIG: fingerprint},
            containers=[container],
            scaling=run_v2.RevisionScaling(min_instance_count=minimum, max_instance_count=maximum),
            max_instance_request_concurrency=spec.concurrency or self.concurrency,
            timeout=timedelta(seconds=spec.request_timeout or self.request_timeout),
            service_account=self.service_account or None,
        )
        latest = run_v2.TrafficTarget(type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100)
        return run_v2.Service(
            name=name if existing is not None else None,
            labels=labels,
            template=template,
            ingress=INGRESS.get(spec.ingress or self.ingress, INGRESS["all"]),
            traffic=[latest],
            etag=existing.etag if existing is not None else None,
        )

    def _wait(self, operation, timeout: float, api: str):
        """Polls a long-running operation to its end; returns its result."""
        deadline = time.monotonic() + timeout
        while not operation.done():
            if time.monotonic() > deadline:
                raise RuntimeBackendError(f"Google Cloud did not finish {operation.operation.name} within {timeout:.0f} s", permanent=False)
            time.sleep(self.poll_interval)
        return operation.result()

    def _revision_with(self, service_name: str, fingerprint: str) -> str | None:
        from google.api_core import exceptions as gexc

        try:
            revisions = list(self._client("revisions").list_revisions(parent=service_name))
        except gexc.NotFound:
            return None
        for revision in revisions:
            if dict(revision.labels).get(LABEL_CONFIG) == fingerprint and _is_ready(revision):
                return revision.name.rsplit("/", 1)[-1]
        return None

    def _revision_tail(self, ref: ServiceRef, revision: str) -> list[str]:
        try:
            return [line.text for line in self._logs(ref, tail=20, revision=revision)]
        except Exception:  # the reason above matters more than the log
            return []

    # -- traffic ----------------------------------------------------------------

    def route_traffic(self, ref: ServiceRef, splits: dict[str, int]) -> None:
        """Sends `splits` (revision name: percent, adding up to 100) of the
        requests to each revision."""
        from google.api_core import exceptions as gexc

        if sum(splits.values()) != 100 or any(p < 0 or p > 100 for p in splits.values()):
            raise RuntimeBackendError("the percentages must be between 0 and 100 and add up to 100")
        name = self.service_name(ref)
        try:
            service = self._client("services").get_service(name=name)
            known = {r.name.rsplit("/", 1)[-1] for r in self._client("revisions").list_revisions(parent=name)}
            unknown = sorted(set(splits) - known)
            if unknown:
                raise RuntimeBackendError(f"Cloud Run has no revision {', '.join(unknown)} of this service (any more)")
            self._set_traffic(service, splits)
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)

    def traffic(self, ref: ServiceRef) -> dict[str, int]:
        """The revisions that get requests now and their percentages."""
        from google.api_core import exceptions as gexc

        try:
            service = self._client("services").get_service(name=self.service_name(ref))
        except gexc.NotFound:
            return {}
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)
        return {s.revision: s.percent for s in service.traffic_statuses if s.percent}

    def _set_traffic(self, service, splits: dict[str, int]):
        from google.cloud import run_v2

        kind = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
        service.traffic = [run_v2.TrafficTarget(type_=kind, revision=r, percent=p) for r, p in splits.items() if p]
        operation = self._client("services").update_service(service=service)
        return self._wait(operation, self.deploy_timeout, "run")

    def _set_public(self, name: str, public: bool) -> None:
        """allUsers may invoke a public service, and nobody else is added;
        a private one has no allUsers binding."""
        from google.iam.v1 import iam_policy_pb2

        services = self._client("services")
        policy = services.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=name))
        binding = next((b for b in policy.bindings if b.role == INVOKER), None)
        has_public = binding is not None and PUBLIC in binding.members
        if public == has_public:
            return
        if public:
            if binding is None:
                binding = policy.bindings.add(role=INVOKER)
            binding.members.append(PUBLIC)
        else:
            members = [m for m in binding.members if m != PUBLIC]
            del binding.members[:]
            binding.members.extend(members)
            if not members:
                policy.bindings.remove(binding)
        services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy))

    # -- stop, start, destroy, status -------------------------------------------

    def stop(self, ref: ServiceRef) -> None:
        """Cloud Run has no stop: the service takes no outside requests
        (internal ingress, no public invoker) and scales to zero."""
        self._power(ref, stopped=True)

    def start(self, ref: ServiceRef) -> None:
        self._power(ref, stopped=False)

    def _power(self, ref: ServiceRef, *, stopped: bool) -> None:
        from google.api_core import exceptions as gexc

        name = self.service_name(ref)
        services = self._client("services")
        try:
            service = services.get_service(name=name)
            labels = dict(service.labels)
            was_public = labels.get(LABEL_STOPPED) == "public"
            if stopped:
                if LABEL_STOPPED in labels:
                    return
                policy = services.get_iam_policy(request={"resource": name})
                labels[LABEL_STOPPED] = "public" if any(
                    b.role == INVOKER and PUBLIC in b.members for b in policy.bindings
                ) else "private"
                service.ingress = INGRESS["internal"]
            else:
                if LABEL_STOPPED not in labels:
                    return
                labels.pop(LABEL_STOPPED)
                service.ingress = INGRESS.get(self.ingress, INGRESS["all"])
            service.labels = labels
            self._wait(services.update_service(service=service), self.deploy_timeout, "run")
            self._set_public(name, False if stopped else was_public)
        except gexc.NotFound:
            raise RuntimeBackendError("Cloud Run has no such service; deploy it first.")
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)

    def destroy(self, ref: ServiceRef) -> None:
        """Deletes the Cloud Run service and the service's images in Artifact Registry."""
        from google.api_core import exceptions as gexc

        try:
            operation = self._client("services").delete_service(name=self.service_name(ref))
            self._wait(operation, self.deploy_timeout, "run")
        except gexc.NotFound:
            pass
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)
        package = quote(f"{ref.team}/{ref.service}", safe="")
        url = (
            f"{self._endpoint('artifactregistry')}/v1/{self.location}/repositories/{self.repository}/packages/{package}"
        )
        response = self._client("session").delete(url, timeout=60)
        if response.status_code == 404:
            return
        body = self._json_or_raise(response, "artifactregistry")
        deadline = time.monotonic() + self.deploy_timeout
        while not body.get("done"):
            if time.monotonic() > deadline:
                raise RuntimeBackendError("Artifact Registry did not finish deleting the images in time", permanent=False)
            time.sleep(self.poll_interval)
            body = self._json_or_raise(
                self._client("session").get(f"{self._endpoint('artifactregistry')}/v1/{body['name']}", timeout=60),
                "artifactregistry",
            )
        if body.get("error"):
            raise RuntimeBackendError(f"Artifact Registry could not delete the images: {body['error'].get('message')}", permanent=False)

    def status(self, ref: ServiceRef) -> ServiceStatus:
        from google.api_core import exceptions as gexc

        try:
            service = self._client("services").get_service(name=self.service_name(ref))
        except gexc.NotFound:
            return ServiceStatus(state="missing")
        except gexc.GoogleAPICallError as exc:
            return ServiceStatus(state="unknown", detail=_in_words(exc, "run", self).message)
        except RuntimeBackendError as exc:
            return ServiceStatus(state="unknown", detail=exc.message)
        instances = [
            Instance(id=s.revision, name=s.revision, state=f"{s.percent}% of requests", address=s.uri)
            for s in service.traffic_statuses
            if s.percent
        ]
        if LABEL_STOPPED in dict(service.labels):
            return ServiceStatus(state="stopped", instances=instances, detail="no outside requests reach it")
        condition = service.terminal_condition
        if condition.state.name == "CONDITION_FAILED":
            return ServiceStatus(state="crashed", instances=instances, detail=condition.message)
        return ServiceStatus(state="running", instances=instances, detail=service.uri)

    # -- logs (Cloud Logging) ---------------------------------------------------

    def logs(self, ref: ServiceRef, *, tail: int = 200) -> list[LogLine]:
        from google.api_core import exceptions as gexc

        try:
            return self._logs(ref, tail=tail)
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "logging", self)

    def _logs(self, ref: ServiceRef, *, tail: int, revision: str = "") -> list[LogLine]:
        from google.cloud import logging as cloud_logging

        since = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = (
            f'resource.type="cloud_run_revision" AND resource.labels.service_name="{self.service_id(ref)}" '
            f'AND resource.labels.location="{self.region}" AND timestamp>="{since}"'
        )
        if revision:
            query += f' AND resource.labels.revision_name="{revision}"'
        entries = self._client("logging").list_entries(
            resource_names=[f"projects/{self.project}"],
            filter_=query,
            order_by=cloud_logging.DESCENDING,
            max_results=tail,
            page_size=min(tail, 1000),
        )
        lines = []
        for entry in entries:
            payload = entry.payload
            if isinstance(payload, dict):
                text = str(payload.get("message") or payload.get("textPayload") or payload)
            else:
                text = "" if payload is None else str(payload)
            request = getattr(entry, "http_request", None)
            if not text and request:
                text = f"{request.get('requestMethod', '')} {request.get('requestUrl', '')} {request.get('status', '')}".strip()
            labels = (entry.resource.labels if entry.resource else {}) or {}
            lines.append(LogLine(timestamp=entry.timestamp, instance=labels.get("revision_name", ""), text=text))
        lines.reverse()
        return lines

    # -- metrics (Cloud Monitoring) ---------------------------------------------

    METRICS = (
        # (Cloud Monitoring metric, aligner, reducer, group by, sample name, scale)
        ("run.googleapis.com/request_count", "ALIGN_DELTA", "REDUCE_SUM", ("metric.labels.response_code_class",), "request_count", 1.0),
        ("run.googleapis.com/request_latencies", "ALIGN_DELTA", "REDUCE_PERCENTILE_50", (), "request_latency_p50_ms", 1.0),
        ("run.googleapis.com/request_latencies", "ALIGN_DELTA", "REDUCE_PERCENTILE_95", (), "request_latency_p95_ms", 1.0),
        ("run.googleapis.com/request_latencies", "ALIGN_DELTA", "REDUCE_PERCENTILE_99", (), "request_latency_p99_ms", 1.0),
        ("run.googleapis.com/container/cpu/utilizations", "ALIGN_DELTA", "REDUCE_PERCENTILE_95", (), "cpu_percent", 100.0),
        ("run.googleapis.com/container/memory/utilizations", "ALIGN_DELTA", "REDUCE_PERCENTILE_95", (), "memory_percent", 100.0),
        ("run.googleapis.com/container/instance_count", "ALIGN_MAX", "REDUCE_SUM", ("metric.labels.state",), "instance_count", 1.0),
    )

    def metrics(self, ref: ServiceRef, *, window: timedelta = timedelta(minutes=10)) -> list[MetricSample]:
        """The latest one-minute value of each metric in `window`: requests by
        status class, latency percentiles, CPU and memory utilization (percent,
        95th percentile over instances) and instance count by state."""
        from google.cloud import monitoring_v3

        end = datetime.now(timezone.utc).replace(microsecond=0)
        start = end - window
        samples = []
        for metric, aligner, reducer, group_by, sample, scale in self.METRICS:
            params = [
                ("filter", f'metric.type="{metric}" AND resource.type="cloud_run_revision" '
                           f'AND resource.labels.service_name="{self.service_id(ref)}" '
                           f'AND resource.labels.location="{self.region}"'),
                ("interval.startTime", start.isoformat().replace("+00:00", "Z")),
                ("interval.endTime", end.isoformat().replace("+00:00", "Z")),
                ("aggregation.alignmentPeriod", "60s"),
                ("aggregation.perSeriesAligner", aligner),
                ("aggregation.crossSeriesReducer", reducer),
                ("view", "FULL"),
            ] + [("aggregation.groupByFields", field) for field in group_by]
            response = self._client("session").get(
                f"{self._endpoint('monitoring')}/v3/projects/{self.project}/timeSeries", params=params, timeout=30
            )
            body = self._json_or_raise(response, "monitoring", raw=True)
            page = monitoring_v3.ListTimeSeriesResponse.from_json(body, ignore_unknown_fields=True)
            for series in page.time_series:
                if not series.points:
                    continue
                point = max(series.points, key=lambda p: p.interval.end_time)
                value = point.value.double_value or float(point.value.int64_value) or point.value.distribution_value.mean
                labels = dict(series.metric.labels)
                samples.append(MetricSample(point.interval.end_time, sample, round(value * scale, 4), labels))
        return samples

    def _json_or_raise(self, response, api: str, *, raw: bool = False):
        from google.api_core import exceptions as gexc

        if response.status_code >= 400:
            raise _in_words(gexc.from_http_response(response), api, self)
        return response.text if raw else response.json()

    # -- revisions (for the portal) ---------------------------------------------

    def revisions(self, ref: ServiceRef) -> list[dict]:
        from google.api_core import exceptions as gexc

        try:
            revisions = list(self._client("revisions").list_revisions(parent=self.service_name(ref)))
        except gexc.NotFound:
            return []
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)
        return [
            {
                "name": r.name.rsplit("/", 1)[-1],
                "release_id": dict(r.labels).get(LABEL_RELEASE, ""),
                "image": r.containers[0].image if r.containers else "",
                "ready": _is_ready(r),
            }
            for r in revisions
        ]


# -- helpers ----------------------------------------------------------------------


def cloud_run_resources(cpu: float, memory_mb: int) -> tuple[str, str]:
    """Cloud Run's limits for a service's CPU and memory: whole CPUs (1, 2, 4,
    6, 8; less than one would force one request at a time), at least 512 MiB
    and at least what that many CPUs need."""
    cpus = next((n for n in (1, 2, 4, 6, 8) if cpu <= n), 8)
    minimum = {1: 512, 2: 512, 4: 2048, 6: 4096, 8: 4096}[cpus]
    return str(cpus), f"{max(int(memory_mb), minimum)}Mi"


def _fingerprint(spec: DeploySpec, backend: CloudRunBackend) -> str:
    """What makes two releases the same revision: image and configuration."""
    parts = [
        spec.image, str(spec.port), *cloud_run_resources(spec.cpu, spec.memory_mb), str(spec.instances),
        spec.health_check_path, repr(sorted(spec.env.items())), repr(sorted(spec.secret_env.items())),
        str(spec.min_instances), str(spec.max_instances),
        str(spec.concurrency or backend.concurrency), str(spec.request_timeout or backend.request_timeout),
    ]
    if spec.restart:
        parts.append(spec.restart)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _is_ready(revision) -> bool:
    for condition in revision.conditions:
        if condition.type_ == "Ready":
            return condition.state.name == "CONDITION_SUCCEEDED"
    return False


def _not_ready(service, backend: CloudRunBackend) -> str:
    condition = service.terminal_condition
    message = condition.message or "the new revision did not become ready"
    secret = _secret_problem(message, backend)
    if secret is not None:
        return secret.message
    return (
        f"Cloud Run did not start the new revision: {message}. "
        "Make sure the app listens on 0.0.0.0 and the port given in $PORT; its last lines are in the log."
    )


def _repack(archive: Path, dockerfile: str | None) -> io.BytesIO:
    """The source as a .tar.gz for Cloud Build, with the plan's Dockerfile
    added at .hakobune/Dockerfile when there is one."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as target:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for item in bundle.infolist():
                    info = tarfile.TarInfo(item.filename.rstrip("/"))
                    if item.is_dir():
                        info.type = tarfile.DIRTYPE
                        info.mode = 0o755
                        target.addfile(info)
                    else:
                        info.size = item.file_size
                        info.mode = 0o644
                        with bundle.open(item) as handle:
                            target.addfile(info, handle)
        else:
            with tarfile.open(archive, "r:*") as source:
                for member in source.getmembers():
                    if member.name.lstrip("./").startswith(".hakobune/") and dockerfile:
                        continue
                    handle = source.extractfile(member) if member.isfile() else None
                    target.addfile(member, handle)
        if dockerfile:
            data = dockerfile.encode()
            info = tarfile.TarInfo(GENERATED_DOCKERFILE)
            info.size = len(data)
            info.mode = 0o644
            target.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


class _LogReader:
    """Reads a Cloud Build log object as it grows, passing new lines on."""

    def __init__(self, bucket, object_name: str, log: Callable[[str], None]):
        self.bucket = bucket
        self.object_name = object_name
        self.log = log
        self.offset = 0
        self.partial = b""
        self.tail: list[str] = []

    def read(self) -> None:
        from google.api_core import exceptions as gexc

        try:
            chunk = self.bucket.blob(self.object_name).download_as_bytes(start=self.offset)
        except gexc.NotFound:
            return
        except gexc.RequestRangeNotSatisfiable:
            return
        except gexc.GoogleAPICallError as exc:
            log.warning("could not read the Cloud Build log %s: %s", self.object_name, exc)
            return
        if not chunk:
            return
        self.offset += len(chunk)
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            self.log(line)
            self.tail = (self.tail + [line])[-30:]


def _in_words(exc, api: str, backend: CloudRunBackend, *, image: str = "") -> RuntimeBackendError:
    """A Google API error as something a person can act on."""
    from google.api_core import exceptions as gexc

    message = getattr(exc, "message", None) or str(exc)
    reason = getattr(exc, "reason", None) or ""
    metadata = getattr(exc, "metadata", None) or {}
    project = backend.project
    lowered = message.lower()
    secret = _secret_problem(message, backend)
    if secret is not None:
        return secret
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


# -- Secret Manager references ------------------------------------------------------

_SECRET_REF = re.compile(
    r"^(?:projects/(?P<project>[a-z0-9-]{1,30})/secrets/)?(?P<name>[A-Za-z0-9_-]{1,255})"
    r"(?:(?:/versions/|:)(?P<version>latest|[1-9][0-9]{0,9}))?$"
)
_SECRET_IN_MESSAGE = re.compile(
    r"projects/(?P<project>[^/\s]+)/secrets/(?P<name>[A-Za-z0-9_-]+)(?:/versions/(?P<version>[A-Za-z0-9]+))?"
)
_RUNS_AS_IN_MESSAGE = re.compile(r"service account (?P<account>[^\s]+@[^\s]+?)\.?(?:\s|$)")


def parse_secret_ref(reference: str) -> tuple[str, str]:
    """A Secret Manager reference as (secret, version): "db-password" (the
    latest version), "db-password:3", or a full "projects/P/secrets/NAME
    [/versions/V]" for a secret in another project. Raises ValueError in words."""
    match = _SECRET_REF.match((reference or "").strip())
    if not match:
        raise ValueError(
            f"{reference!r} is not a Secret Manager secret: give its name (db-password), a name and version "
            "(db-password:3), or projects/PROJECT/secrets/NAME for a secret in another project."
        )
    secret = match["name"] if not match["project"] else f"projects/{match['project']}/secrets/{match['name']}"
    return secret, match["version"] or "latest"


def normalize_secret_ref(reference: str) -> str:
    """The one spelling Hakobune stores: "secret:version"."""
    secret, version = parse_secret_ref(reference)
    return f"{secret}:{version}"


def _secret_problem(message: str, backend: CloudRunBackend) -> RuntimeBackendError | None:
    """Cloud Run's refusals about a referenced secret, as what to do."""
    found = _SECRET_IN_MESSAGE.search(message)
    lowered = message.lower()
    if not found or "secret" not in lowered:
        return None
    name, project, version = found["name"], found["project"], found["version"] or "latest"
    if "permission" in lowered or "denied" in lowered:
        runs_as = _RUNS_AS_IN_MESSAGE.search(message)
        account = runs_as["account"] if runs_as else (backend.service_account or "the service's runtime service account")
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
