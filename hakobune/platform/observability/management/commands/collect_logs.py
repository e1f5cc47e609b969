"""Runs the log collector until stopped (SIGTERM or SIGINT): scripts/start.sh
starts it beside the workers (hakobune/platform/observability/logcollector.py).
The teams' log drains are shipped from the same process (drains.py)."""

import logging
import resource
import signal

from django.core.management.base import BaseCommand

from hakobune.platform.observability.drains import Shipper
from hakobune.platform.observability.logcollector import Collector


class Command(BaseCommand):
    help = ("Follows the output of every running service and stores it (runtime logs, request metrics); "
            "sends each team's logs to its log drain.")

    def handle(self, *args, **options):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # One open log file per running container: more than the usual
        # 1,024 on a host of many services.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        collector = Collector()
        shipper = Shipper()

        def stop(signum, frame):
            collector.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        shipper.start()
        self.stdout.write("collecting runtime logs", ending="\n")
        self.stdout.flush()
        try:
            collector.run()
        finally:
            shipper.stop()
        self.stdout.write(f"stopped; {collector.stored} lines stored", ending="\n")
