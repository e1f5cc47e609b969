"""Base images ("stacks") per language.

    python manage.py stack ensure python           # find, pull or build it
    python manage.py stack build node              # node, go (build stage), static (lighttpd; Go's run stage)
    python manage.py stack build python            # re-import the locally built stack
    python manage.py stack build python --no-cache # run debootstrap again
"""

from pathlib import Path

import docker
import docker.errors
import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hakobune.worker import stacks


class Command(BaseCommand):
    help = "Find, pull or build the base image (stack) each language's apps are built on."

    def add_arguments(self, parser):
        parser.add_argument(
            "action",
            choices=["ensure", "build"],
            help="ensure: use the configured image if present or pullable, else build one from "
            "Debian packages. build: build hakobune/stack-<language>:<suite> locally, even if it exists.",
        )
        parser.add_argument("language", help="python, node, go or static")
        parser.add_argument("--no-pull", action="store_true", help="ensure: do not try the registry.")
        parser.add_argument(
            "--redeploy",
            action="store_true",
            help="build: then redeploy every live service built on this stack (through the worker).",
        )
        parser.add_argument(
            "--no-cache",
            action="store_true",
            help="build: delete the cached root filesystem tarball and run debootstrap again.",
        )

    def handle(self, *args, action, language, **options):
        images = getattr(settings, "STACK_IMAGES", {}) or {}
        known = sorted(set(images) | set(stacks.RECIPES))
        if language not in known:
            raise CommandError(f"Unknown language {language!r}; known: {', '.join(known)}.")

        try:
            client = docker.from_env()
            client.ping()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise CommandError(
                f"Cannot reach the Docker Engine ({exc}). Is dockerd running? (scripts/install-deps.sh starts it.)"
            ) from exc

        def log(line):
            self.stdout.write(line)
            self.stdout.flush()

        common = dict(
            suite=settings.STACK_DEBIAN_SUITE,
            mirror=settings.STACK_DEBIAN_MIRROR,
            ca_bundle=settings.BUILD_CA_BUNDLE or None,
            cache_dir=Path(getattr(settings, "STACK_CACHE_DIR", Path(settings.DATA_DIR) / "stacks")),
            log=log,
        )
        try:
            if action == "ensure":
                result = stacks.resolve_stack(
                    client,
                    language,
                    images.get(language, ""),
                    allow_pull=not options["no_pull"],
                    allow_build=True,
                    **common,
                )
            else:
                if language not in stacks.RECIPES:
                    raise CommandError(
                        f"Hakobune cannot build a {language!r} stack locally; it can build: "
                        f"{', '.join(sorted(stacks.RECIPES))}."
                    )
                result = stacks.build_local_stack(
                    client,
                    language,
                    use_cache=not options["no_cache"],
                    force=True,
                    **common,
                )
        except stacks.StackError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            client.close()

        self.stdout.write(self.style.SUCCESS(f"{result.language} stack ready"))
        self.stdout.write(f"  ref:     {result.ref}")
        self.stdout.write(f"  origin:  {result.origin}")
        self.stdout.write(f"  version: {result.version}")
        if action == "build" and options["redeploy"]:
            from hakobune.platform.services.services import redeploy_services_on_stack

            builds = redeploy_services_on_stack(language=language)
            for build in builds:
                self.stdout.write(f"  redeploying {build.service} as deploy #{build.number}")
            self.stdout.write(f"{len(builds)} service(s) on the {language} stack are being redeployed.")
