"""Base images ("stacks") per language.

    python manage.py stack ensure python           # find, pull or build it
    python manage.py stack build node              # node, go (build stage), static (lighttpd; Go's run stage)
    python manage.py stack build python            # re-import the locally built stack
    python manage.py stack build python --no-cache # run debootstrap again
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hakobune.platform.builds.images import local_builder
from hakobune.worker import stacks
from hakobune.worker.builders.base import BuildError


class Command(BaseCommand):
    help = "Find, pull or build the base image (stack) each language's apps are built on."

    def add_arguments(self, parser):
        parser.add_argument(
            "action",
            choices=["ensure", "build"],
            help="ensure: use the configured image if present or pullable, else build one from "
            "Debian packages. build: build hakobune/stack-<language>:<suite> locally, even if it exists.",
        )
        parser.add_argument("language", help="python, node, go, static, python-node, java, ruby, php, or an add-on's: postgres, redis")
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

        def log(line):
            self.stdout.write(line)
            self.stdout.flush()

        builder = local_builder()
        try:
            if action == "ensure":
                result = builder.ensure_stack(language, log, allow_pull=not options["no_pull"])
            else:
                result = builder.rebuild_stack(language, log, use_cache=not options["no_cache"])
        except BuildError as exc:
            hint = " Is dockerd running? (scripts/install-deps.sh starts it.)" if exc.transient else ""
            raise CommandError(f"{exc.message}{hint}") from exc

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
