"""When each step of a build ended (Build.milestones): the guided deploy's
timings. Only the step that holds the build writes them, one after another,
so a read and a write of the JSON do not race."""

from django.utils import timezone

from .models import Build

# In order; each step's time runs from the end of the one before (the first's from started_at).
ORDER = ("fetched", "detected", "built", "started", "healthy", "routed")


def mark(build_id: int, *names: str, only_missing: bool = False) -> None:
    now = timezone.now().isoformat()
    current = Build.objects.filter(id=build_id).values_list("milestones", flat=True).first()
    if current is None:
        return
    marks = dict(current or {})
    for name in names:
        if name not in ORDER:
            raise ValueError(f"no milestone called {name!r}")
        if only_missing and name in marks:
            continue
        marks[name] = now
    Build.objects.filter(id=build_id).update(milestones=marks)
