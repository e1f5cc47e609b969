"""Cloud Run's image builder: Cloud Build builds the app and pushes the image to
Artifact Registry, where Cloud Run pulls it from.

The source goes to Cloud Storage as a .tar.gz of the app's folder, with the
plan's Dockerfile added at .hakobune/Dockerfile (on the stacks' registry
images: Cloud Build cannot use this host's own stacks), or as it is for the
app's own Dockerfile or for Google's buildpacks (mode "buildpacks"). The log
Cloud Build writes into the bucket is read as it grows and passed on line by
line.

A build runs user code (a Dockerfile's RUN lines, an app's install step), so
it runs confined, per team: as the team's own build service account
(tenants.py), which needs only to read the team's sources, write their logs
and push images; the containers its steps start are not put on the
`cloudbuild` Docker network, through which they would reach the account's
credentials. Each team's sources and build logs live under their own prefixes
of the bucket (hakobune/sources/<team>/, hakobune/build-logs/<team>/), so
that the account can be granted those and nothing else. A build with its own
service account must keep its log in a bucket or in Cloud Logging; here it is
the bucket only (GCS_ONLY), read as it grows.

OPTIONS (those of the Cloud Run backend it belongs to, see the package):
    builder                           the default mode: "dockerfile" (the plan) or "buildpacks"
    stack_images                      {language: registry image} the plan's Dockerfile starts FROM
    build_timeout, poll_interval      seconds

Nothing here knows Django."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import time
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import requests

from hakobune.worker import source
from hakobune.worker.builders.base import BUILDPACKS, PLAN, BuildError, BuildRequest, BuiltImage, ImageBuilder

from ..base import RuntimeBackendError
from .client import GoogleCloud, _in_words

log = logging.getLogger(__name__)

GENERATED_DOCKERFILE = ".hakobune/Dockerfile"
BUILDPACKS_BUILDER = "gcr.io/buildpacks/builder:latest"
PACK_IMAGE = "gcr.io/k8s-skaffold/pack"
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"


@contextmanager
def _google_errors():
    """What Google's libraries raise outside the calls handled in place (the
    sign-in, a connection that failed) as BuildError."""
    from google.auth import exceptions as auth_errors

    try:
        yield
    except BuildError:
        raise
    except RuntimeBackendError as exc:
        raise _failed(exc) from exc
    except (requests.ConnectionError, requests.Timeout, auth_errors.TransportError, ConnectionError) as exc:
        raise BuildError(f"Google Cloud could not be reached ({exc}); deploy again.", user_error=False,
                         transient=True) from exc


class CloudBuildBuilder(ImageBuilder):
    capabilities = frozenset({"buildpacks"})

    def __init__(self, alias: str, *, cloud: GoogleCloud | None = None, **options):
        super().__init__(alias, **options)
        # The Cloud Run backend's own connection when it made this builder:
        # the same settings, credentials and clients.
        self.cloud = cloud if cloud is not None else GoogleCloud(options)
        self.default_mode = BUILDPACKS if options.get("builder") == BUILDPACKS else PLAN
        self.stack_images = dict(options.get("stack_images") or {})
        self.build_timeout = float(options.get("build_timeout", 1200))

    def build(self, request: BuildRequest, log: Callable[[str], None]) -> BuiltImage:
        """Builds the app's folder in Cloud Build: with the plan's Dockerfile on
        the stacks' registry images, the app's own Dockerfile, or Google's
        buildpacks, as the request's mode says. The image is tagged by the
        source and the recipe, so the same build again gives the same tag."""
        plan = request.plan
        buildpacks = request.mode == BUILDPACKS
        dockerfile = None
        if buildpacks:
            log(f"Building with {self.alias}'s buildpacks, as the service's settings ask (the plan is not used)")
        elif not plan.uses_own_dockerfile:
            refs = {name: (self.stack_images.get(name) or "").strip() for name in plan.stacks}
            missing = [name for name, ref in refs.items() if not ref]
            if missing:
                raise BuildError(
                    f"the {missing[0]} stack has no registry image, so {self.alias} cannot build on it: "
                    f"set STACK_{missing[0].upper().replace('-', '_')}_IMAGE to an image a remote builder can pull, "
                    "or choose the buildpacks builder in the service's settings.",
                    user_error=False,
                )
            dockerfile = plan.dockerfile(refs[plan.stack], build_image=refs.get(plan.build_stack) or None)
            log(f"Building on {refs[plan.stack]} in {self.alias}")
        archive = Path(request.workspace) / "remote-source.tar.gz"
        source.pack_tree(Path(request.source_dir), archive)
        settings = "\0".join(f"{k}={v}" for k, v in sorted(request.build_env.items()))
        recipe = (f"{BUILDPACKS}\0{request.start_command}\0{settings}" if buildpacks
                  else (dockerfile or plan.dockerfile_path))
        tag = hashlib.sha256(f"{request.source_digest}\0{recipe}".encode()).hexdigest()[:16]
        image = self.submit(
            archive, dockerfile, f"{request.team}/{request.service}:{tag}", log,
            dockerfile_path=plan.dockerfile_path or "Dockerfile", buildpacks=buildpacks,
            start_command=request.start_command, team=request.team, build_env=request.build_env,
        )
        return BuiltImage(ref=image, plan=plan)

    def remove_images(self, team: str, service: str, *, keep: set[str] = frozenset()) -> list[str]:
        """Removes nothing: a service's images in Artifact Registry are what
        its Cloud Run revisions (and their traffic splits) run, and they all go
        with the service (CloudRunBackend.destroy). A cleanup policy on the
        repository can age old ones out."""
        return []

    @_google_errors()
    def submit(
        self,
        source_archive: Path,
        plan_dockerfile: str | None,
        image_name: str,
        log: Callable[[str], None],
        *,
        dockerfile_path: str = "Dockerfile",
        buildpacks: bool | None = None,
        start_command: str = "",
        team: str = "",
        build_env: dict[str, str] | None = None,
    ) -> str:
        """Builds `source_archive` (.tar.gz or .zip whose top is the app) in
        Cloud Build, as `team`'s build account (default: the team `image_name`
        begins with), and pushes it to Artifact Registry as `image_name`
        ("team/service:tag"); returns the pushed image as name@digest.

        With `plan_dockerfile` the plan's Dockerfile is written into the source
        and built; with None the app's own `dockerfile_path`; with buildpacks
        (default: the `builder` option) Google's buildpacks builder, told
        `start_command` as GOOGLE_ENTRYPOINT when there is one and
        `build_env` (the service's GOOGLE_* settings) as build environment.
        Raises BuildError."""
        from google.api_core import exceptions as gexc
        from google.cloud.devtools import cloudbuild_v1

        team = team or image_name.split("/", 1)[0]
        cloud = self.cloud
        cloud._require_config()
        use_buildpacks = self.default_mode == BUILDPACKS if buildpacks is None else buildpacks
        image = cloud.image_path(image_name)
        upload = _repack(Path(source_archive), None if use_buildpacks else plan_dockerfile)
        try:
            digest = hashlib.sha256(upload.getvalue()).hexdigest()[:16]
            name = image_name.split("/", 1)[-1].replace(":", "-").replace("/", "-")
            object_name = f"hakobune/sources/{team}/{name}-{digest}.tar.gz"
            log(f"Uploading the source to gs://{cloud.bucket_name}/{object_name}")
            self._upload(object_name, upload, team)
        finally:
            upload.close()

        if use_buildpacks:
            log(f"Building in Cloud Build with Google's buildpacks ({BUILDPACKS_BUILDER})")
            pack = ["build", image, "--builder", BUILDPACKS_BUILDER, "--path", "."]
            env = {key: value for key, value in (build_env or {}).items() if key.startswith("GOOGLE_")}
            if start_command:
                env["GOOGLE_ENTRYPOINT"] = start_command  # the service's start command wins, as here
            for key, value in sorted(env.items()):
                pack += ["--env", f"{key}={value}"]
            steps = [cloudbuild_v1.BuildStep(name=PACK_IMAGE, entrypoint="pack", args=pack)]
        else:
            dockerfile = GENERATED_DOCKERFILE if plan_dockerfile else (dockerfile_path or "Dockerfile")
            log(f"Building in Cloud Build with {'the plan' if plan_dockerfile else 'your'} Dockerfile ({dockerfile})")
            steps = [
                cloudbuild_v1.BuildStep(name=DOCKER_BUILDER, args=["build", "-t", image, "-f", dockerfile, "."])
            ]
        logs_prefix = f"hakobune/build-logs/{team}"
        account = cloud.build_account(team)
        log(f"Building as team {team}'s build account {account}")
        build = cloudbuild_v1.Build(
            source=cloudbuild_v1.Source(
                storage_source=cloudbuild_v1.StorageSource(bucket=cloud.bucket_name, object_=object_name)
            ),
            steps=steps,
            images=[image],
            logs_bucket=f"gs://{cloud.bucket_name}/{logs_prefix}",
            service_account=f"projects/{cloud.project}/serviceAccounts/{account}",
            options=cloudbuild_v1.BuildOptions(logging=cloudbuild_v1.BuildOptions.LoggingMode.GCS_ONLY),
            timeout=timedelta(seconds=self.build_timeout),
            tags=["hakobune", f"team-{team}"],
        )
        client = cloud._client("cloudbuild")
        try:
            operation = client.create_build(project_id=cloud.project, build=build)
        except gexc.GoogleAPICallError as exc:
            raise _failed(_in_words(exc, "cloudbuild", cloud, team=team))
        build_id = operation.metadata.build.id if operation.metadata else ""
        log(f"Cloud Build {build_id} started")
        reader = _LogReader(cloud._client("storage").bucket(cloud.bucket_name), f"{logs_prefix}/log-{build_id}.txt", log)
        deadline = time.monotonic() + self.build_timeout + 60
        try:
            while not operation.done():
                reader.read()
                if time.monotonic() > deadline:
                    raise BuildError(
                        f"Cloud Build {build_id} did not end within {self.build_timeout:.0f} s",
                        user_error=False, transient=True, log_tail=reader.tail,
                    )
                time.sleep(cloud.poll_interval)
            reader.read()
            result = client.get_build(project_id=cloud.project, id=build_id)
        except gexc.GoogleAPICallError as exc:
            raise _failed(_in_words(exc, "cloudbuild", cloud, team=team))
        status = cloudbuild_v1.Build.Status(result.status).name
        if status != "SUCCESS":
            detail = result.status_detail or f"the build ended {status}"
            # FAILURE: a step failed (the app's build); TIMEOUT: it took too long.
            # Anything else (INTERNAL_ERROR, CANCELLED, EXPIRED) is Google's side.
            apps_fault = status in ("FAILURE", "TIMEOUT")
            raise BuildError(
                f"Cloud Build {build_id} failed: {detail}. Its log is above; fix the error and deploy again.",
                user_error=apps_fault, transient=not apps_fault, log_tail=reader.tail,
            )
        for built in result.results.images:
            if built.name == image and built.digest:
                return f"{image.rsplit(':', 1)[0]}@{built.digest}"
        return image

    def _upload(self, object_name: str, data: io.BytesIO, team: str) -> None:
        from google.api_core import exceptions as gexc

        cloud = self.cloud
        bucket = cloud._client("storage").bucket(cloud.bucket_name)
        for attempt in range(2):
            data.seek(0)
            try:
                bucket.blob(object_name).upload_from_file(data, content_type="application/gzip")
                return
            except gexc.NotFound:
                if attempt:
                    raise BuildError(
                        f"the bucket gs://{cloud.bucket_name} ({cloud._where('CLOUDRUN_BUCKET', 'bucket')}) does not exist",
                        user_error=False,
                    )
                try:  # like gcloud: the staging bucket is made on first use, with
                    # uniform access, so that each team's build account can be
                    # granted its own prefixes of it (IAM conditions need it).
                    storage = cloud._client("storage")
                    new = storage.bucket(cloud.bucket_name)
                    new.iam_configuration.uniform_bucket_level_access_enabled = True
                    storage.create_bucket(new, location=cloud.region)
                except gexc.Conflict:
                    pass
                except gexc.GoogleAPICallError as exc:
                    raise _failed(_in_words(exc, "storage", cloud, team=team))
            except gexc.GoogleAPICallError as exc:
                raise _failed(_in_words(exc, "storage", cloud, team=team))


def _failed(error: RuntimeBackendError) -> BuildError:
    """A Google error in words (client._in_words) as a build's failure: not the
    app's; transient where the backend's error is not permanent."""
    return BuildError(error.message, user_error=False, transient=not error.permanent, log_tail=error.log_tail)


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


