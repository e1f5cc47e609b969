"""What the API takes and gives. Output serializers are read-only views of the
models; input serializers only check shapes, the actions in services.py decide."""

from decimal import Decimal

from django.conf import settings
from rest_framework import serializers
from rest_framework.utils.serializer_helpers import BindingDict

from hakobune.platform.accounts.models import Role
from hakobune.platform.addons.models import Kind as AddOnKind
from hakobune.platform.builds.admission import waiting_ahead
from hakobune.platform.notifications.models import Event, TargetKind
from hakobune.platform.services.models import Release
from hakobune.runtime.release_config import Setting, all_settings, declaration_stamp


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, and what to do about it.")
    code = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
    retry_after = serializers.IntegerField(required=False, help_text="Seconds to wait before trying again.")


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()


# -- auth and accounts ------------------------------------------------------------------


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, style={"input_type": "password"})
    name = serializers.CharField(max_length=100, required=False, default="CLI", help_text="What the token is for.")
    expires_in_days = serializers.IntegerField(min_value=1, max_value=3650, required=False, allow_null=True, default=None)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Shown only this once; keep it secret.")
    id = serializers.IntegerField()
    name = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)


class MembershipOfMeSerializer(serializers.Serializer):
    team = serializers.CharField(source="team.name")
    role = serializers.ChoiceField(choices=Role.choices)


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    teams = MembershipOfMeSerializer(many=True, source="memberships")


class QuotaLineSerializer(serializers.Serializer):
    used = serializers.FloatField(help_text="What the team's services hold now, as their runtimes count it.")
    limit = serializers.FloatField()


class QuotaSerializer(serializers.Serializer):
    services = QuotaLineSerializer()
    cpu = QuotaLineSerializer(help_text="CPU cores held at once.")
    memory_mb = QuotaLineSerializer(help_text="MiB held at once.")
    review = serializers.BooleanField(help_text="Whether a new service's first deploy waits for an administrator.")


class TeamSerializer(serializers.Serializer):
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, help_text="Your role in it.")
    created_at = serializers.DateTimeField()
    quota = QuotaSerializer()


DNS_LABEL = r"^[a-z]([a-z0-9-]*[a-z0-9])?$"
DNS_LABEL_MESSAGE = "Use lowercase letters, digits and hyphens; start with a letter and do not end with a hyphen."


class TeamCreateSerializer(serializers.Serializer):
    name = serializers.RegexField(DNS_LABEL, max_length=30, error_messages={"invalid": DNS_LABEL_MESSAGE},
                                  help_text="Lowercase letters, digits and hyphens; part of every service's address.")


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email", allow_blank=True)
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()


class MemberAddSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=254, help_text="Their username or e-mail address; they need an account.")
    role = serializers.ChoiceField(choices=Role.choices, default=Role.DEVELOPER)


# -- notifications ----------------------------------------------------------------------


class NotificationTargetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=TargetKind.choices)
    shown = serializers.CharField(help_text="What is shown of its address: a URL's scheme and host, an e-mail address "
                                            "half hidden. The address itself is a secret and is never given back.")
    language = serializers.ChoiceField(choices=settings.LANGUAGES, help_text="The language of its messages.")
    created_at = serializers.DateTimeField()


class NotificationTargetCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="Unique in the team, like 'ops e-mail' or '#deploys'.")
    kind = serializers.ChoiceField(choices=TargetKind.choices)
    address = serializers.CharField(
        max_length=2000,
        help_text="An e-mail address, or the webhook URL of Slack, Discord or Microsoft Teams (Workflows), or an "
                  "https:// URL that takes a JSON POST. URLs must be public addresses (the same checks as git URLs); "
                  "stored encrypted.",
    )
    language = serializers.ChoiceField(choices=settings.LANGUAGES, default="en")


class DeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.ChoiceField(choices=Event.choices, source="alert.event")
    service = serializers.CharField(source="alert.service.name", allow_null=True,
                                    help_text="The service it was about; null for the team's own (a test).")
    target = serializers.CharField(source="target_name")
    target_kind = serializers.CharField(help_text="The target's kind: email, slack, discord, teams or webhook.")
    status = serializers.CharField(help_text="pending while it is tried (a few times), then sent or failed.")
    attempts = serializers.IntegerField()
    reason = serializers.CharField(allow_blank=True, help_text="Why it failed (or why the last attempt did), in English.")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class AlertRuleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    service = serializers.CharField(source="service.name", allow_null=True, default=None,
                                    help_text="The service these rules are for (they replace the team's for it); "
                                    "null: the whole team's rules.")
    deploy_failed = serializers.BooleanField(help_text="Alert when a deploy fails.")
    crash_loop = serializers.BooleanField(help_text="Alert when a service keeps crashing (local and Cloud Run).")
    memory_high = serializers.BooleanField(help_text="Alert when an instance uses memory_percent of its limit.")
    memory_percent = serializers.IntegerField(help_text="50 to 100.")
    error_rate = serializers.BooleanField(help_text="Alert when error_rate_percent of the requests fail (5xx).")
    error_rate_percent = serializers.FloatField(help_text="0.1 to 100, over the last few minutes.")
    backup_failed = serializers.BooleanField(help_text="Alert when a backup fails.")
    targets = serializers.SerializerMethodField(help_text="The names of the targets these alerts go to; empty: "
                                                "every target of the team.")
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField(source="updated_by.username", allow_null=True, default=None)

    def get_targets(self, rules) -> list[str]:
        return sorted(target.name for target in rules.targets.all())


class AlertRuleWriteSerializer(serializers.Serializer):
    deploy_failed = serializers.BooleanField(required=False)
    crash_loop = serializers.BooleanField(required=False)
    memory_high = serializers.BooleanField(required=False)
    memory_percent = serializers.IntegerField(required=False, min_value=50, max_value=100)
    error_rate = serializers.BooleanField(required=False)
    error_rate_percent = serializers.FloatField(required=False, min_value=0.1, max_value=100.0)
    backup_failed = serializers.BooleanField(required=False)
    targets = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=50,
        help_text="Names of the team's targets these alerts go to (the whole list); empty: every target.")
    new_targets = NotificationTargetCreateSerializer(
        many=True, required=False, help_text="Targets to add to the team and send these alerts to, with the same "
        "checks as POST …/notifications/targets/ (a URL must be a public address).")


class AlertRuleCreateSerializer(AlertRuleWriteSerializer):
    service = serializers.CharField(required=False, allow_null=True, default=None, max_length=100,
                                    help_text="A service of the team; omitted or null: the team's own rules. "
                                    "Fields not given take the defaults (every event, memory at 90 %, errors at 5 %).")


class LogDrainErrorSerializer(serializers.Serializer):
    rule = serializers.CharField(help_text="A stable word for the failure: drain.http_status, drain.unreachable, "
                                 "drain.timeout, drain.tls, drain.redirect, drain.address_refused.")
    message = serializers.CharField(help_text="What went wrong, in words.")
    at = serializers.DateTimeField()


class LogDrainSerializer(serializers.Serializer):
    url = serializers.CharField(source="url_shown", help_text="The address without its user, password or query "
                                "(which may hold a token, kept encrypted and never shown again).")
    kind = serializers.ChoiceField(choices=["https", "syslog"], help_text="https: JSON lines POSTed in batches; "
                                   "syslog: RFC 5424 messages over TCP (TLS with syslog+tls://).")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    shipped_lines = serializers.IntegerField(help_text="Lines sent since the address was saved.")
    dropped_lines = serializers.IntegerField(help_text="Lines not sent because the endpoint was more than "
                                             "LOG_DRAIN_MAX_BACKLOG lines behind (the oldest go first).")
    last_success_at = serializers.DateTimeField(allow_null=True)
    failures = serializers.IntegerField(help_text="Failed attempts in a row; 0 when the last one worked.")
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="While failing: when it is tried again.")
    last_error = LogDrainErrorSerializer(allow_null=True, help_text="The last failure, kept after a later success.")


class LogDrainUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000, help_text="https://… (JSON lines POSTed in batches), "
                                "syslog+tls://host:port (RFC 5424 over TLS); must be a public address.")


# -- services ---------------------------------------------------------------------------


class BuildRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    status = serializers.CharField()


class ReleaseSerializer(serializers.ModelSerializer):
    build = serializers.IntegerField(source="build_id", help_text="The build (its id) whose image it runs.")
    build_number = serializers.IntegerField(source="build.number")

    class Meta:
        model = Release
        fields = ["id", "number", "description", "status", "image", "config", "failure_reason", "build", "build_number",
                  "created_at", "live_at"]


class SourceSerializer(serializers.Serializer):
    kind = serializers.CharField(source="source_kind")
    git_url = serializers.CharField(allow_blank=True)
    git_ref = serializers.CharField(allow_blank=True)
    subdir = serializers.CharField(source="source_subdir", allow_blank=True)


def setting_output_field(setting: Setting) -> serializers.Field:
    """How the API shows a declared setting's value."""
    kind = {bool: serializers.BooleanField, float: serializers.FloatField, int: serializers.IntegerField}
    return kind.get(setting.type, serializers.CharField)(**({"allow_null": True} if setting.optional else {}))


def setting_input_field(setting: Setting) -> serializers.Field:
    """What the API takes for a declared setting: its type and bounds; never
    required (what is left out stays as it is)."""
    options = {"required": False}
    if setting.description:
        options["help_text"] = setting.description
    if setting.optional:
        options["allow_null"] = True
    if setting.check:
        options["validators"] = [_checked_by(setting)]
    if setting.type is bool:
        return serializers.BooleanField(**options)
    if setting.choices:
        return serializers.ChoiceField(choices=list(setting.choice_values), **options)
    if setting.type is str:
        return serializers.CharField(max_length=setting.max_length, allow_blank=setting.blank, **options)
    limits = {option: getattr(setting, name) for option, name in (("min_value", "min"), ("max_value", "max"))
              if getattr(setting, name) is not None}
    if setting.type is float:
        most, places = setting.digits or (None, None)
        return serializers.DecimalField(
            max_digits=most, decimal_places=places, **{k: Decimal(str(v)) for k, v in limits.items()}, **options,
        )
    return serializers.IntegerField(**limits, **options)


def _checked_by(setting: Setting):
    def validate(value):
        problem = setting.check(value)
        if problem:
            raise serializers.ValidationError(problem)

    return validate


# Adds a field for each declared setting the API offers when the serializer is
# made (so a setting declared later is there too), after the field named by
# `settings_after`, or last. (A comment, not a docstring: the API's schema
# would show a docstring as the description of every serializer using it.)
class DeclaredSettingsMixin:
    settings_after: str | None = None

    def setting_field(self, setting: Setting) -> serializers.Field:
        raise NotImplementedError

    @property
    def fields(self):
        # DRF keeps an instance's fields once made; these are made again when
        # the declaration changed since (a serializer made at import time, in
        # a view's schema, stays current).
        stamp, made = self.__dict__.get("_declared_fields_made", (None, None))
        if stamp != declaration_stamp():
            made = BindingDict(self)
            for name, field in self.get_fields().items():
                made[name] = field
            self.__dict__["_declared_fields_made"] = (declaration_stamp(), made)
        return made

    def get_fields(self):
        fields = super().get_fields()
        declared = {s.name: self.setting_field(s) for s in all_settings() if s.in_api and s.name not in fields}
        if self.settings_after not in fields:
            return {**fields, **declared}
        ordered = {}
        for name, field in fields.items():
            ordered[name] = field
            if name == self.settings_after:
                ordered.update(declared)
        return ordered


class ServiceSerializer(DeclaredSettingsMixin, serializers.Serializer):
    name = serializers.CharField()
    team = serializers.CharField(source="team.name")
    status = serializers.SerializerMethodField(help_text="new, deploying, in review, live, stopped, asleep or failed")
    url = serializers.CharField()
    target = serializers.CharField()
    # The declared settings come here (DeclaredSettingsMixin).
    source = SourceSerializer(source="*")
    live_release = ReleaseSerializer(allow_null=True)
    latest_build = serializers.SerializerMethodField()
    route_problem = serializers.CharField(
        help_text="Why the router leaves this service's route out (a domain it cannot serve, say), in words; "
                  "empty when it is routed. The platform's other services are served all the same."
    )
    created_at = serializers.DateTimeField()

    settings_after = "target"

    def setting_field(self, setting):
        return setting_output_field(setting)

    def get_status(self, service) -> str:
        return service.status_word(service.latest_build)

    def get_latest_build(self, service) -> BuildRefSerializer(allow_null=True):
        build = service.latest_build
        return BuildRefSerializer(build).data if build else None


class ServiceSettingsSerializer(DeclaredSettingsMixin, serializers.Serializer):
    """The settings runtimes that scale by themselves need, and visibility."""

    # Takes every declared setting the API offers. The docstring is the
    # description the API's schema was published with, kept as it is.

    def setting_field(self, setting):
        return setting_input_field(setting)


class ServiceCreateSerializer(ServiceSettingsSerializer):
    name = serializers.RegexField(DNS_LABEL, max_length=30, error_messages={"invalid": DNS_LABEL_MESSAGE},
                                  help_text="Lowercase letters, digits and hyphens; part of its address.")
    target = serializers.CharField(max_length=32, required=False, help_text="Which runtime runs it (default: the platform's).")
    git_url = serializers.CharField(required=False, allow_blank=True, max_length=500)
    git_ref = serializers.CharField(required=False, allow_blank=True, max_length=255)
    subdir = serializers.CharField(required=False, allow_blank=True, max_length=255)

    def validate_target(self, value):
        if value not in settings.RUNTIME_BACKENDS:
            raise serializers.ValidationError(
                f"There is no target called {value!r}; this platform has: {', '.join(sorted(settings.RUNTIME_BACKENDS))}."
            )
        return value


class ServiceUpdateSerializer(ServiceSettingsSerializer):
    pass


class DeployUploadSerializer(serializers.Serializer):
    source = serializers.FileField(help_text="A .zip, .tar.gz, .tar or .tar.xz of the app's folder.")
    subdir = serializers.CharField(required=False, allow_blank=True, max_length=255, help_text="The app's folder inside it.")


class DeployGitSerializer(serializers.Serializer):
    git_url = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                    help_text="https address of the repository; default: the service's.")
    ref = serializers.CharField(required=False, allow_blank=True, max_length=255, help_text="Branch, tag or commit.")
    subdir = serializers.CharField(required=False, allow_blank=True, max_length=255)


class BuildSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    team = serializers.CharField(source="service.team.name")
    service = serializers.CharField(source="service.name")
    status = serializers.CharField(help_text="queued, fetching, detecting, building, reviewing (waiting for an administrator), deploying, live, failed, cancelled or superseded (a newer deploy of the service won)")
    in_progress = serializers.BooleanField()
    waiting_ahead = serializers.SerializerMethodField(
        help_text="While queued: how many builds go before it (builds run a few at a time, in turn between teams)."
    )
    reason = serializers.CharField(source="failure_reason", help_text="Why it failed, when it did.")
    failed_step = serializers.CharField()
    trigger = serializers.CharField()
    source = serializers.CharField(source="source_label")
    git_commit = serializers.CharField()
    detection = serializers.CharField(source="detection_reason")
    plan = serializers.JSONField(allow_null=True)
    image = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.SerializerMethodField()
    url = serializers.CharField(source="service.url", help_text="Where the service answers once live.")

    def get_duration_seconds(self, build) -> float | None:
        return build.duration.total_seconds() if build.duration else None

    def get_waiting_ahead(self, build) -> int | None:
        return waiting_ahead(build)


class DeployAcceptedSerializer(BuildSerializer):
    log_url = serializers.CharField()


class TrafficShareSerializer(serializers.Serializer):
    release = serializers.IntegerField(help_text="The release's number (3 for v3).")
    revision = serializers.CharField(help_text="The runtime's revision it runs as.")
    percent = serializers.IntegerField()


class TrafficSerializer(serializers.Serializer):
    split = TrafficShareSerializer(many=True, help_text="Each revision's newest release and its share, newest first.")


class TrafficUpdateSerializer(serializers.Serializer):
    percents = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=100),
        help_text='Release number: percent, adding up to 100, like {"3": 80, "4": 20}.',
    )

    def validate_percents(self, value):
        if not value or not all(str(key).isdigit() for key in value):
            raise serializers.ValidationError('Give release numbers and percentages, like {"3": 80, "4": 20}.')
        return {int(key): percent for key, percent in value.items()}


class ProcessSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The process type: web, or a name from the Procfile (worker…).")
    instances = serializers.IntegerField(help_text="How many instances of it run.")
    cpu = serializers.FloatField(help_text="CPU cores per instance.")
    memory_mb = serializers.IntegerField(help_text="Memory per instance, in MiB.")
    command = serializers.CharField(help_text="The command it runs (web: the image's start command).")
    routed = serializers.BooleanField(help_text="Whether requests are routed to it (web only).")


class ProcessesSerializer(serializers.Serializer):
    processes = ProcessSerializer(many=True)
    release = serializers.IntegerField(allow_null=True, help_text="The release a change made, if any.")


class JobRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    scheduled_for = serializers.DateTimeField(help_text="The tick of the schedule it ran for (UTC).")
    status = serializers.CharField(help_text="running, succeeded, failed or skipped (its previous run still ran).")
    exit_code = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    detail = serializers.CharField(help_text="Why it failed or was skipped, in words.")
    log = serializers.CharField(help_text="Its last lines of output.")


class JobSerializer(serializers.Serializer):
    name = serializers.CharField()
    schedule = serializers.CharField(help_text="Cron's five fields, in UTC.")
    command = serializers.CharField()
    next_run = serializers.DateTimeField()
    runs = JobRunSerializer(many=True, help_text="The latest runs, newest first.")


class JobsSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True)


class OneOffRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    command = serializers.CharField()
    started_by = serializers.CharField(source="started_by_name", help_text="Who ran it.")
    release = serializers.IntegerField(source="release.number", allow_null=True, default=None,
                                       help_text="The release it ran in (3 for v3).")
    tty = serializers.BooleanField(help_text="Whether it had a terminal (a TTY).")
    status = serializers.CharField(help_text="running, exited, disconnected (its terminal went away first), "
                                             "timed_out or failed (it could not start).")
    exit_code = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


class OneOffRunsSerializer(serializers.Serializer):
    runs = OneOffRunSerializer(many=True, help_text="The latest one-off commands, newest first.")


class RollbackSerializer(serializers.Serializer):
    release = serializers.IntegerField(min_value=1, help_text="The number of the release to go back to (3 for v3).")


class EnvVarSerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.CharField(help_text="Always masked: values are write-only.")
    secret = serializers.CharField(
        allow_null=True, help_text="The Secret Manager secret it comes from (name:version), or null for a value."
    )
    updated_at = serializers.DateTimeField()


class EnvSerializer(serializers.Serializer):
    env = EnvVarSerializer(many=True)
    release = serializers.IntegerField(allow_null=True, required=False,
                                       help_text="The new release that applies the change, when the service is live.")


class EnvUpdateSerializer(serializers.Serializer):
    # Values are kept byte for byte: a trailing space or newline is part of the value.
    set = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=32768, trim_whitespace=False), required=False, default=dict
    )
    unset = serializers.ListField(child=serializers.CharField(max_length=128), required=False, default=list)
    secrets = serializers.DictField(
        child=serializers.CharField(max_length=400), required=False, default=dict,
        help_text="Variables read from Secret Manager by the runtime (Cloud Run): KEY: secret or secret:version, "
                  "one of the team's own secrets (a short name like db-password means hakobune_<team>_db-password).",
    )


class LogLineSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(allow_null=True)
    instance = serializers.CharField(allow_blank=True)
    text = serializers.CharField(allow_blank=True, help_text="The values of the service's environment variables "
                                 "are shown masked (••••••).")
    id = serializers.IntegerField(required=False, help_text="Collected logs: the line's id (for ?before= and ?after=).")
    stream = serializers.CharField(required=False, help_text="Collected logs: stdout, stderr or platform.")
    process = serializers.CharField(required=False, allow_blank=True)
    release = serializers.IntegerField(required=False)


class LogsSerializer(serializers.Serializer):
    lines = LogLineSerializer(many=True)
    before = serializers.IntegerField(
        required=False, allow_null=True,
        help_text="Collected logs: ask ?before=<this> (with the same filters) for the lines before these; null when "
                  "no older line is left to read.")
    searched_back_to = serializers.DateTimeField(
        required=False, allow_null=True,
        help_text="Collected logs, with a filter: a filter reads at most LOGS_SEARCH_LINES (20,000) lines a call; "
                  "when older lines were left unread, the time of the oldest line read (ask ?before= to go on).")


class MetricSampleSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField()
    name = serializers.CharField(
        help_text="cpu_percent, memory_bytes, memory_limit_bytes; request_count (per minute, labelled "
        "response_code_class), request_latency_p50_ms/p95_ms/p99_ms, response_bytes (per minute; local services); "
        "on Cloud Run also memory_percent, instance_count (labelled state)"
    )
    value = serializers.FloatField()
    labels = serializers.DictField(child=serializers.CharField(allow_blank=True))


class MetricsSerializer(serializers.Serializer):
    since = serializers.DateTimeField(allow_null=True)
    step = serializers.IntegerField(help_text="Seconds between points: each point is the average of its step.")
    history = serializers.BooleanField(help_text="False: nothing was collected yet, so the samples are the current ones.")
    samples = MetricSampleSerializer(many=True)


class ServiceChangeSerializer(ServiceSerializer):
    release = serializers.IntegerField(allow_null=True, required=False, help_text="The new release that applies the change.")


class EventActorSerializer(serializers.Serializer):
    username = serializers.CharField(allow_null=True, help_text="The person's username; null for Hakobune itself (or a person since deleted).")
    label = serializers.CharField(help_text="Who, as shown: the username when it was done, or Hakobune.")
    token = serializers.CharField(allow_blank=True, help_text="The name of the API token they used, if they used one.")


class EventSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="Ask for the page before it with ?before=<id>.")
    at = serializers.DateTimeField()
    kind = serializers.CharField(help_text="deploy.live, instance.crashed, env.changed, member.added…")
    severity = serializers.ChoiceField(choices=["info", "success", "warning", "error"])
    team = serializers.CharField()
    service = serializers.CharField(allow_null=True, help_text="null for what concerns the whole team.")
    actor = EventActorSerializer()
    message = serializers.CharField(help_text="The event in a sentence, in the language asked for (Accept-Language).")
    params = serializers.DictField(help_text="What the sentence is made of (numbers, names, keys; never a secret value).")


class EventsSerializer(serializers.Serializer):
    events = EventSerializer(many=True, help_text="Newest first.")
    next_before = serializers.IntegerField(allow_null=True, help_text="Give it as ?before= for the older page; null: no more.")


# -- add-ons --------------------------------------------------------------------------


class AddOnCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=AddOnKind.choices)
    name = serializers.CharField(max_length=30, required=False, allow_blank=True, default="")


class AddOnAttachSerializer(serializers.Serializer):
    addon = serializers.CharField(max_length=30)


class AddOnDeleteSerializer(serializers.Serializer):
    confirm = serializers.CharField(max_length=30, required=False, allow_blank=True, default="")


class AddOnSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    status_detail = serializers.CharField()
    version = serializers.CharField()
    cpu = serializers.FloatField()
    memory_mb = serializers.IntegerField()
    volume = serializers.CharField()
    env_key = serializers.CharField()
    url = serializers.CharField(help_text="How the team's services reach it; the password is never shown.")
    external = serializers.BooleanField(
        help_text="An external database an administrator entered for the team (Hakobune runs nothing for it); "
                  "the only kind a service on Cloud Run can be attached to.")
    services = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()


# -- under the hood ------------------------------------------------------------------------------


class HoodNamespaceSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="pid, net, mnt, uts, ipc, cgroup or user.")
    container = serializers.CharField(help_text="The number of the instance's namespace of this kind (/proc/<pid>/ns/<kind>).")
    host = serializers.CharField(help_text="The number of the host's (/proc/1/ns/<kind>).")
    shared = serializers.BooleanField(help_text="Whether the instance shares the host's namespace of this kind.")


class HoodCgroupSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The host's cgroup version: 1 or 2.")
    memory_limit_bytes = serializers.IntegerField(allow_null=True, help_text="null: no limit.")
    memory_bytes = serializers.IntegerField(allow_null=True, help_text="In use, less the page cache the kernel can take back.")
    cpu_limit_cores = serializers.FloatField(allow_null=True, help_text="The CPU quota over its period, in cores.")
    cpu_quota_us = serializers.IntegerField(allow_null=True)
    cpu_period_us = serializers.IntegerField()
    cpu_percent = serializers.FloatField(allow_null=True, help_text="Of one core, over a quarter of a second.")
    pids_limit = serializers.IntegerField(allow_null=True)
    pids = serializers.IntegerField(allow_null=True)
    files = serializers.DictField(child=serializers.CharField(), help_text="The cgroup file each value was read from.")


class HoodCapabilitiesSerializer(serializers.Serializer):
    effective = serializers.ListField(child=serializers.CharField(), help_text="The instance's effective capabilities (none).")
    bounding = serializers.ListField(child=serializers.CharField())
    host_root = serializers.ListField(child=serializers.CharField(), help_text="What root on the host holds.")
    no_new_privileges = serializers.BooleanField()
    uid = serializers.CharField(help_text="The user the app runs as.")


class HoodLayerSerializer(serializers.Serializer):
    part = serializers.CharField(help_text="stack, dependencies or code.")
    size_bytes = serializers.IntegerField(allow_null=True)
    shared_with = serializers.IntegerField(help_text="How many other services' images hold this layer (a count only).")
    saves_bytes = serializers.IntegerField(help_text="The disk that sharing it saves.")
    step = serializers.CharField(help_text="The image step that made it.")
    digest = serializers.CharField(help_text="The start of the layer's digest.")


class HoodHostSerializer(serializers.Serializer):
    kernel = serializers.CharField(help_text="The kernel every container here shares.")
    cpus = serializers.IntegerField()
    memory_bytes = serializers.IntegerField()


class HoodContainerSerializer(serializers.Serializer):
    instance = serializers.CharField()
    hostname = serializers.CharField()
    address = serializers.CharField(help_text="Its address on the team's network.")
    network = serializers.CharField()
    namespaces = HoodNamespaceSerializer(many=True)
    userns_remapped = serializers.BooleanField()
    cgroups = HoodCgroupSerializer()
    capabilities = HoodCapabilitiesSerializer()
    layers = HoodLayerSerializer(many=True, help_text="Oldest first.")
    saved_bytes = serializers.IntegerField(help_text="The disk that sharing layers with other services saves.")
    image_bytes = serializers.IntegerField()
    host = HoodHostSerializer()
    start_seconds = serializers.FloatField(allow_null=True, help_text="From the container's creation to its start.")
    running_instances = serializers.IntegerField()
    read_only_root = serializers.BooleanField()


class HoodSandboxSerializer(serializers.Serializer):
    revision = serializers.CharField()
    url = serializers.CharField()
    region = serializers.CharField()
    execution_environment = serializers.CharField(help_text="gen1 (gVisor), gen2 (a microVM), or empty: Cloud Run's choice.")
    cpu = serializers.CharField()
    memory = serializers.CharField()
    min_instances = serializers.IntegerField()
    max_instances = serializers.IntegerField()
    concurrency = serializers.IntegerField()
    request_timeout = serializers.IntegerField()
    cpu_only_during_requests = serializers.BooleanField()


class UnderTheHoodSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["container", "sandbox"],
                                   help_text="container: read live from an instance on this host; sandbox: Cloud Run.")
    container = HoodContainerSerializer(allow_null=True)
    sandbox = HoodSandboxSerializer(allow_null=True)


# -- backups of add-ons ------------------------------------------------------------------


class BackupCheckSerializer(serializers.Serializer):
    passed = serializers.BooleanField(help_text="Whether the restore into a scratch container found what was dumped.")
    summary = serializers.CharField(help_text="The check in a sentence (English).")
    expected = serializers.DictField(child=serializers.IntegerField(),
                                     help_text="Counted when dumped: rows per table, or keys-before/keys-after.")
    found = serializers.DictField(child=serializers.IntegerField(), help_text="Counted in the restored copy.")


class BackupSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    addon = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.ChoiceField(choices=["running", "verified", "failed"])
    step = serializers.CharField(help_text="queued, dumping, storing, checking or done.")
    trigger = serializers.ChoiceField(choices=["schedule", "on_demand"])
    scheduled_for = serializers.DateTimeField(allow_null=True)
    storage = serializers.ChoiceField(choices=["local", "s3"])
    size_bytes = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField()
    check = BackupCheckSerializer(allow_null=True)
    detail = serializers.CharField(help_text="Why it failed, in a sentence; empty otherwise.")
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    restores = serializers.ListField(child=serializers.DictField(), help_text="Its restores, newest first "
                                     "(as POST …/restore/ answers them).")


class BackupScheduleSerializer(serializers.Serializer):
    schedule = serializers.CharField(allow_blank=True, help_text="Cron, in UTC; empty: none scheduled.")
    retention = serializers.IntegerField(help_text="How many verified backups are kept.")
    next_run = serializers.DateTimeField(allow_null=True)
    last_run = serializers.DateTimeField(allow_null=True, help_text="The tick of the newest scheduled backup.")
    missed = serializers.BooleanField(help_text="A tick passed with no backup made: the scheduler is not running.")


class BackupsSerializer(serializers.Serializer):
    schedule = BackupScheduleSerializer()
    backups = BackupSerializer(many=True, help_text="Newest first.")


class BackupScheduleChangeSerializer(serializers.Serializer):
    schedule = serializers.CharField(max_length=100, required=False, allow_blank=True)
    retention = serializers.IntegerField(required=False, min_value=1, max_value=365)


class RestoreCreateSerializer(serializers.Serializer):
    confirm = serializers.CharField(max_length=30, required=False, allow_blank=True,
                                    help_text="The add-on's name, to restore into it (replacing what it holds).")
    new_addon = serializers.CharField(max_length=30, required=False, allow_blank=True,
                                      help_text="The name of a new add-on to restore into instead.")


class RestoreSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    backup = serializers.IntegerField()
    addon = serializers.CharField(help_text="The add-on restored into.")
    into_new = serializers.BooleanField()
    status = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed"])
    detail = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField())
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
# -- volumes (hakobune/platform/volumes) ---------------------------------------------------

class VolumeCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=30)


class VolumeUpdateSerializer(serializers.Serializer):
    shared = serializers.BooleanField(
        help_text="Safe for several containers at once: the service may scale and deploys rolling (owners only).")


class VolumeDeleteSerializer(serializers.Serializer):
    confirm = serializers.CharField(max_length=30, required=False, allow_blank=True, default="",
                                    help_text="The volume's name: its data is deleted for good.")


class VolumeAttachSerializer(serializers.Serializer):
    volume = serializers.CharField(max_length=30)
    path = serializers.CharField(max_length=200, help_text="Where the app sees it, like /data or /app/uploads.")


class VolumeSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.CharField()
    status_detail = serializers.CharField()
    service = serializers.CharField(allow_null=True)
    mount_path = serializers.CharField()
    shared = serializers.BooleanField()
    size_bytes = serializers.IntegerField(help_text="What it holds on disk, as last measured.")
    measured_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class DiskUsageSerializer(serializers.Serializer):
    used_bytes = serializers.IntegerField()
    limit_bytes = serializers.IntegerField()
    by_user = serializers.DictField(child=serializers.IntegerField(),
                                    help_text="Bytes by what holds them: volumes, backups…")


class ServiceDeleteSerializer(serializers.Serializer):
    confirm = serializers.CharField(max_length=63, required=False, allow_blank=True, default="",
                                    help_text="The service's name. Its volumes and add-ons stay.")
