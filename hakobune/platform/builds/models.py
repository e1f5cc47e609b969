from django.conf import settings
from django.db import models
from django.utils import timezone

from hakobune.platform.services.models import Service

from .status import ADMITTED, FINISHED, IN_PROGRESS, STOPPABLE, STOPPED, BuildStatus  # noqa: F401 (importable from here)

# The most build log lines one page or one poll of the portal shows.
LOG_PAGE_LINES = 2000


class SecondsBetween(models.Func):
    """end − start in seconds, computed by the database (`julianday` on
    SQLite, `EXTRACT(EPOCH …)` on PostgreSQL); NULL when either is."""

    output_field = models.FloatField()

    def __init__(self, start, end):
        super().__init__(end, start)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="((julianday(%(expressions)s)) * 86400.0)",
                           arg_joiner=") - julianday(", **extra)

    def as_sql(self, compiler, connection, **extra):
        extra.setdefault("template", "EXTRACT(EPOCH FROM (%(expressions)s))")
        extra.setdefault("arg_joiner", " - ")
        return super().as_sql(compiler, connection, **extra)


def source_upload_path(build, filename):
    return f"sources/{build.service.team.name}/{build.service.name}/{filename}"


class Build(models.Model):
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="builds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=BuildStatus.choices, default=BuildStatus.QUEUED)
    # The source snapshot: the uploaded archive, or the fetched git tree packed
    # as .tar.gz. Rebuilds and rollbacks reuse it.
    source_archive = models.FileField(upload_to=source_upload_path, max_length=500, blank=True)
    source_filename = models.CharField(max_length=255, blank=True, help_text="As the person uploaded it.")
    source_kind = models.CharField(max_length=16, default="archive")
    git_url = models.CharField(max_length=500, blank=True)
    git_ref = models.CharField(max_length=255, blank=True)
    git_commit = models.CharField(max_length=64, blank=True)
    source_subdir = models.CharField(max_length=255, blank=True)
    trigger = models.CharField(max_length=16, default="upload", help_text="upload, git, webhook or rebuild")
    source_digest = models.CharField(max_length=64, blank=True)
    # The worker host that fetched the source (settings.WORKER_HOST): the
    # steps that read it run there (hakobune/platform/queue.py).
    worker_host = models.CharField(max_length=63, blank=True)
    detection_reason = models.TextField(blank=True)
    plan = models.JSONField(null=True, blank=True)
    image = models.CharField(max_length=255, blank=True)
    # In English, for the API and the admin; the portal shows the diagnosis
    # (hakobune/platform/diagnoses.py) in the reader's language.
    failure_reason = models.TextField(blank=True)
    failure_rule = models.CharField(max_length=64, blank=True)
    failure_params = models.JSONField(default=dict, blank=True)
    # The step a worker has taken on; see state.claim(). The worker renews its
    # lease on it (heartbeat_at) while the step runs; a step whose lease ran
    # out is given back and queued again by the sweeper (builds/sweeper.py).
    # Unclaimed, heartbeat_at is when the step was last queued.
    claimed_step = models.CharField(max_length=16, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # How often the sweeper took the current step back from a worker that died.
    step_resumes = models.PositiveSmallIntegerField(default=0)
    failed_step = models.CharField(max_length=16, blank=True, choices=BuildStatus.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Seconds from its admission (started_at) to its end, set with
    # finished_at (state.advance); None when it ended before admission.
    # /metrics' histogram reads it from the index alone.
    duration_seconds = models.FloatField(null=True, blank=True)
    # When each step of the way ended, as ISO times: fetched, detected, built
    # (pipeline steps), started, healthy, routed (the deploy step, as the
    # runtime reports them). The guided deploy shows them as timings.
    milestones = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["service", "number"], name="build_number_unique_per_service")]
        # The sweeper reads the builds in progress every few seconds; /metrics
        # counts the builds by outcome and duration from the second alone
        # (observability/platform_metrics.py), never reading the rows.
        indexes = [models.Index(fields=["status"], name="build_status"),
                   models.Index(fields=["status", "failed_step", "duration_seconds"], name="build_outcomes")]

    def __str__(self):
        return f"{self.service} build #{self.number}"

    @property
    def in_progress(self):
        return self.status in IN_PROGRESS

    @property
    def stoppable(self):
        """Whether it may still be cancelled (it has not reached its deploy)."""
        return self.status in STOPPABLE

    @property
    def source_label(self) -> str:
        if self.source_kind == "git":
            commit = f" @ {self.git_commit[:10]}" if self.git_commit else ""
            return f"{self.git_ref}{commit}"
        return self.source_filename or "archive"

    def log_page(self, after: int = 0) -> list[tuple[int, str]]:
        """(id, text) of up to LOG_PAGE_LINES log lines after the line id `after`."""
        return list(self.log_lines.filter(id__gt=after).values_list("id", "text")[:LOG_PAGE_LINES])

    @property
    def failure_text(self) -> str:
        """Why it failed, in the reader's language."""
        from hakobune.platform.diagnoses import render

        return render(self.failure_rule, self.failure_params) if self.failure_rule else self.failure_reason

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class BuildLogLine(models.Model):
    """One line of a build's log; lines are rows so that the worker appends
    without rewriting and the portal reads only what is new."""

    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="log_lines")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["build", "id"])]


def plan_check_upload_path(check, filename):
    return f"sources/{check.service.team.name}/{check.service.name}/plan-{filename}"


class PlanCheck(models.Model):
    """A look at a source before anything is built: the worker fetches it and
    runs detection only, and the plan it found is kept here for the person to
    read (the guided first deploy). A deploy of the plan then builds from
    the same snapshot (services.deploy_checked_plan)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        CHECKING = "checking", "checking"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="plan_checks")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # archive (an upload), sample (one of samples/, packed) or git.
    source_kind = models.CharField(max_length=16, default="archive")
    sample = models.CharField(max_length=32, blank=True)
    source_archive = models.FileField(upload_to=plan_check_upload_path, max_length=500, blank=True)
    source_filename = models.CharField(max_length=255, blank=True)
    git_url = models.CharField(max_length=500, blank=True)
    git_ref = models.CharField(max_length=255, blank=True)
    git_commit = models.CharField(max_length=64, blank=True)
    source_subdir = models.CharField(max_length=255, blank=True)
    stack = models.CharField(max_length=32, blank=True)
    detection_reason = models.TextField(blank=True)
    plan = models.JSONField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)
    failure_rule = models.CharField(max_length=64, blank=True)
    failure_params = models.JSONField(default=dict, blank=True)
    # The deploy made of this plan, once the person asked for it.
    build = models.ForeignKey(Build, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # When its task was last sent (the sweeper sends a lost one again), and
    # when a worker took it on (one that died is seen by the sweeper).
    sent_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"{self.service} plan check {self.id}"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def failure_text(self) -> str:
        from hakobune.platform.diagnoses import render

        return render(self.failure_rule, self.failure_params) if self.failure_rule else self.failure_reason
