"""Deploys tests/fixtures/apps/flask-hello to a real Google Cloud project with
the Cloud Run backend, without the portal: Cloud Storage upload, Cloud Build,
Cloud Run service, public invoker binding; then reads status, logs and
metrics, and deletes the service and its images (unless --keep).

It deploys as team "smoke": its builds run as hakobune-build-smoke@<project>
and its service as hakobune-run-smoke@<project>, which must exist (Check
access, printed first, says how to make them).

Needs CLOUDRUN_PROJECT and credentials (CLOUDRUN_CREDENTIALS = a service-account
key file, or application default credentials). Not run in CI: it costs money
and talks to Google. Run it with `make cloudrun-smoke`."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hakobune.runtime.base import DeploySpec, RuntimeBackendError, ServiceRef  # noqa: E402
from hakobune.runtime.release_config import ReleaseConfig  # noqa: E402
from hakobune.runtime.cloud_run import CloudRunBackend  # noqa: E402
from hakobune.worker import source  # noqa: E402
from hakobune.worker.builders.base import BuildError, BuildRequest  # noqa: E402
from hakobune.worker.buildpacks import detect  # noqa: E402


def refuse(message: str) -> None:
    print(f"cloudrun-smoke: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="flask-hello", help="a folder in tests/fixtures/apps")
    parser.add_argument("--keep", action="store_true", help="leave the service running")
    parser.add_argument("--secret", action="append", default=[], metavar="KEY=SECRET[:VERSION]",
                        help="an env var read from Secret Manager (hakobune_smoke_SECRET must exist, readable by "
                             "the team's runtime account)")
    args = parser.parse_args()

    project = os.environ.get("CLOUDRUN_PROJECT", "")
    credentials = os.environ.get("CLOUDRUN_CREDENTIALS") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    if not project:
        refuse("set CLOUDRUN_PROJECT (and CLOUDRUN_REGION, CLOUDRUN_CREDENTIALS); nothing was sent anywhere.")
    if credentials and not Path(credentials).is_file():
        refuse(f"the key file {credentials} does not exist; nothing was sent anywhere.")
    if not credentials:
        # Application default credentials from gcloud; the metadata server is
        # not probed here, so that nothing is sent before there are credentials.
        adc = Path(os.environ.get("CLOUDSDK_CONFIG", Path.home() / ".config" / "gcloud")) / "application_default_credentials.json"
        if not adc.is_file():
            refuse("no credentials: set CLOUDRUN_CREDENTIALS to a service-account key file, "
                   "or run `gcloud auth application-default login`; nothing was sent anywhere.")

    backend = CloudRunBackend(
        "cloudrun",
        project=project,
        region=os.environ.get("CLOUDRUN_REGION", "europe-west1"),
        repository=os.environ.get("CLOUDRUN_REPOSITORY", "hakobune"),
        credentials=credentials,
        bucket=os.environ.get("CLOUDRUN_BUCKET", ""),
        builder=os.environ.get("CLOUDRUN_BUILDER", "dockerfile"),
        stack_images={"python": "python:3.12-slim", "node": "node:22-slim"},
    )
    app = ROOT / "tests" / "fixtures" / "apps" / args.app
    plan = detect(app).plan
    ref = ServiceRef("smoke", args.app.replace("_", "-"))
    secret_env = {}
    for pair in args.secret:
        key, _, reference = pair.partition("=")
        try:
            secret_env[key] = backend.secret_reference(reference, team=ref.team)
        except ValueError as exc:
            refuse(f"--secret {pair}: {exc}")
    try:
        for fine, words in backend.check_access(teams=[ref.team]):
            print(f"{'✓' if fine else '✗'} {words}")
        with tempfile.TemporaryDirectory() as tmp:
            request = BuildRequest(team=ref.team, service=ref.service, source_dir=app,
                                   source_digest=source.tree_digest(app), plan=plan, workspace=Path(tmp))
            image = backend.image_builder().build(request, print).ref
        print(f"✓ image {image}")
        result = backend.deploy(DeploySpec(
            team=ref.team, service=ref.service, release_id=1, release_number=1, image=image, hostname="",
            config=ReleaseConfig.of(port=plan.port, cpu=1, memory_mb=512, instances=1), secret_env=secret_env,
        ))
        print(f"✓ live at {result.url} (revision {result.state['revision']})")
        for attempt in range(10):
            try:
                with urllib.request.urlopen(result.url, timeout=20) as response:
                    print(f"✓ {result.url} answered {response.status}: {response.read(200)!r}")
                    break
            except OSError as exc:
                print(f"  waiting for {result.url}: {exc}")
                time.sleep(5)
        print(f"✓ status: {backend.status(ref)}")
        for line in backend.logs(ref, tail=10):
            print(f"  log: {line.timestamp} {line.text}")
        print(f"✓ {len(backend.metrics(ref))} metric samples")
    except (RuntimeBackendError, BuildError) as exc:
        print(f"✗ {exc.message}", file=sys.stderr)
        for line in exc.log_tail:
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)
    finally:
        if not args.keep:
            try:
                backend.destroy(ref)
                print("✓ service and images deleted")
            except RuntimeBackendError as exc:
                print(f"✗ could not delete: {exc.message}", file=sys.stderr)


if __name__ == "__main__":
    main()
