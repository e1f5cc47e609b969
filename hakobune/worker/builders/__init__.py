"""Image builders: what turns an app's source and plan into an image. The
interface and its error family are in base.py; local_docker.py builds on this
host's Docker Engine, and Cloud Run's own builder (CloudBuildBuilder, in
hakobune.runtime.cloud_run.build) in Cloud Build."""

from .base import BUILDPACKS, MODES, PLAN, BuildError, BuildRequest, BuiltImage, ImageBuilder

__all__ = ["BUILDPACKS", "MODES", "PLAN", "BuildError", "BuildRequest", "BuiltImage", "ImageBuilder"]
