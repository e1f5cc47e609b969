"""The words of the declared settings (hakobune/runtime/release_config.py, a
library without Django) marked for translation: the portal's forms put them
through gettext when they show them. Keep in step with the declarations
(tests/unit/test_i18n.py checks)."""

from django.utils.translation import gettext_noop

WORDS = [
    gettext_noop('CPU (cores)'),
    gettext_noop('CPU cores per instance.'),
    gettext_noop('Memory (MiB)'),
    gettext_noop('Memory per instance, in MiB.'),
    gettext_noop('Instances'),
    gettext_noop('How many instances serve the service.'),
    gettext_noop('Port ($PORT)'),
    gettext_noop('The port your app listens on; it is also given to it as $PORT.'),
    gettext_noop('Health-check path'),
    gettext_noop('Asked before the new release takes requests; it must answer.'),
    gettext_noop('Public'),
    gettext_noop("Off: no public address; your team's other services reach it at http://<name>:<port>."),
    gettext_noop('Start command'),
    gettext_noop('Empty: what Hakobune detected (or your hakobune.toml says). Applies from the next deploy.'),
    gettext_noop('Build command'),
    gettext_noop('Run after the dependencies are installed. Applies from the next deploy.'),
    gettext_noop('Fewest instances'),
    gettext_noop('Kept warm even without requests (they cost money); empty: 0, the first request waits for a start.'),
    gettext_noop('Most instances'),
    gettext_noop('Empty: the Instances number above.'),
    gettext_noop('Requests per instance'),
    gettext_noop("Served at once before another instance starts; empty: the platform's default (80)."),
    gettext_noop('Request timeout (seconds)'),
    gettext_noop("A longer request is cut off; empty: the platform's default (300)."),
    gettext_noop('Requests from'),
    gettext_noop('Where requests may come from.'),
    gettext_noop("The platform's default"),
    gettext_noop('Anywhere (the internet)'),
    gettext_noop("Only inside the project's network"),
    gettext_noop('Inside the network and through a Cloud Load Balancer'),
    gettext_noop('Builder'),
    gettext_noop("Hakobune's plan builds the Dockerfile shown for each deploy; Google Cloud's buildpacks build the source their own way (gcr.io/buildpacks/builder). Applies from the next deploy."),
    gettext_noop("Hakobune's plan (a Dockerfile)"),
    gettext_noop("Google Cloud's buildpacks"),
]
