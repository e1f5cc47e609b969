"""The service page's metric charts: the collected history (the same store the
API reads) drawn as small inline SVG line charts with their axes in HTML, one
per kind of reading, with nothing to load in the browser."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from django.utils.timezone import localtime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

# The lines' own coordinates; the chart stretches them to its box (hakobune.css).
WIDTH, HEIGHT = 600, 100
PALETTE = ("#1f5fbf", "#177245", "#b42318", "#8a5a00", "#6d3fb8", "#0f7c8c", "#c2410c", "#475569")
MIB = 1024 * 1024


@dataclass(frozen=True)
class ChartKind:
    title: str
    unit: str
    metrics: tuple[str, ...]
    scale: float = 1.0
    # A reading drawn dashed as the line not to cross (the memory limit).
    limit_metric: str = ""
    explain: str = ""


KINDS = (
    ChartKind("CPU", "%", ("cpu_percent",),
              # xgettext:no-python-format
              explain=_("100% is one whole core; the limit is the service's CPU setting.")),
    ChartKind(_("Memory"), "MiB", ("memory_bytes",), scale=1 / MIB, limit_metric="memory_limit_bytes",
              explain=_("What each instance uses; at the dashed line the kernel stops it (out of memory).")),
    ChartKind(_("Memory"), "%", ("memory_percent",), explain=_("Of the memory each instance may use (95th percentile).")),
    ChartKind(_("Requests"), _("per minute"), ("request_count",), explain=_("By status class: 2xx fine, 4xx the caller's fault, 5xx the app's.")),
    ChartKind(_("Latency"), "ms", ("request_latency_p50_ms", "request_latency_p95_ms", "request_latency_p99_ms"),
              explain=_("Half of the requests are faster than p50, all but 1 in 100 faster than p99.")),
    # Its unit (B, KiB, MiB or GiB a minute) is chosen by the largest value shown.
    ChartKind(_("Data sent"), "", ("response_bytes",), explain=_("What the service sent back in its responses, through the router.")),
    ChartKind(_("Instances"), "", ("instance_count",), explain=_("Instances running: active ones serve requests, idle ones wait.")),
)


@dataclass
class Line:
    label: str
    points: list[tuple[datetime, float]]
    color: str = ""
    dashed: bool = False

    @property
    def latest(self) -> float:
        return self.points[-1][1]

    @property
    def latest_label(self) -> str:
        return _number(self.latest)


@dataclass
class Chart:
    kind: ChartKind
    lines: list[Line] = field(default_factory=list)
    plot: str = ""
    unit: str = ""


BYTE_UNITS = (("GiB", 1024 ** 3), ("MiB", MIB), ("KiB", 1024), ("B", 1))


def _bytes_unit(largest: float) -> tuple[str, float]:
    """The unit a chart of bytes a minute reads best in, and its scale."""
    name, size = next(((name, size) for name, size in BYTE_UNITS if largest >= size), BYTE_UNITS[-1])
    return gettext("%(unit)s per minute") % {"unit": name}, 1 / size


def build_charts(points: list[dict], since: datetime, until: datetime, step: int = 60) -> list[Chart]:
    """Charts for the kinds of reading there are points of, in KINDS order.
    `points` are history() rows (timestamp, name, value, labels), one per
    `step` seconds at most."""
    by_metric: dict[str, dict[str, list[tuple[datetime, float]]]] = {}
    for point in points:
        series = by_metric.setdefault(point["name"], {})
        series.setdefault(_series_label(point["labels"]), []).append((point["timestamp"], point["value"]))
    charts = []
    for kind in KINDS:
        if not any(metric in by_metric for metric in kind.metrics):
            continue
        chart, scale = Chart(kind, unit=str(kind.unit)), kind.scale
        if kind.metrics == ("response_bytes",):
            chart.unit, scale = _bytes_unit(max(v for series in by_metric[kind.metrics[0]].values() for _, v in series))
        for metric in kind.metrics:
            for label, values in sorted(by_metric.get(metric, {}).items()):
                name = _metric_label(metric, kind) or label or str(kind.title).lower()
                if label and len(kind.metrics) > 1:
                    name = f"{name} {label}"
                chart.lines.append(Line(name, [(t, v * scale) for t, v in sorted(values)]))
        for index, line in enumerate(chart.lines):
            line.color = PALETTE[index % len(PALETTE)]
        if kind.limit_metric and kind.limit_metric in by_metric:
            limits = [v for series in by_metric[kind.limit_metric].values() for _, v in series]
            if limits:
                limit = max(limits) * kind.scale
                chart.lines.append(Line(gettext("limit"), [(since, limit), (until, limit)], color="#b42318", dashed=True))
        chart.plot = _plot(chart, since, until, gap=2.5 * step)
        charts.append(chart)
    return charts


def _series_label(labels: dict[str, str]) -> str:
    if "instance" in labels:
        return _short_instance(labels["instance"])
    if labels.get("response_code_class") == "other":
        # Requests the router logged without a status: the client went away first.
        return gettext("no answer")
    return " ".join(labels.values())


def _short_instance(name: str) -> str:
    """hakobune-acme-hello-v3-0-1a2b3c → v3 #0: the release and the instance."""
    parts = name.split("-")
    for index, part in enumerate(parts):
        if part[:1] == "v" and part[1:].isdigit() and index + 1 < len(parts) and parts[index + 1].isdigit():
            return f"{part} #{parts[index + 1]}"
    return name


def _metric_label(metric: str, kind: ChartKind) -> str:
    if len(kind.metrics) == 1:
        return ""
    return metric.removeprefix("request_latency_").removesuffix("_ms")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value * (1 - 1e-9))


def _runs(points: list[tuple[datetime, float]], gap: float) -> list[list[tuple[datetime, float]]]:
    """The points split where no reading came for longer than `gap` seconds
    (the service was stopped, or asleep): no line is drawn across that."""
    runs: list[list[tuple[datetime, float]]] = []
    for point in points:
        if runs and (point[0] - runs[-1][-1][0]).total_seconds() <= gap:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def _plot(chart: Chart, since: datetime, until: datetime, gap: float) -> str:
    """The chart's lines in an SVG stretched to its box, whatever the
    screen's width (its strokes keep their width), and its axis labels as
    text of the page's own size around it: text inside a scaled SVG shrank
    with it, to 5 px on a phone."""
    span = max((until - since).total_seconds(), 1.0)
    top = nice_ceiling(max((v for line in chart.lines for _, v in line.points), default=0) * 1.05)

    def x(when: datetime) -> float:
        return WIDTH * min(max((when - since).total_seconds() / span, 0.0), 1.0)

    def y(value: float) -> float:
        return HEIGHT * (1 - min(value / top, 1.0))

    said = gettext("%(title)s over time") % {"title": chart.kind.title}
    stroke = 'vector-effect="non-scaling-stroke"'
    labels = [_number(top * fraction) for fraction in (0, 0.5, 1)]
    width = max(len(label) for label in labels)
    parts = [f'<div class="chart" style="--label-width: {width}ch" role="img" aria-label="{escape(said)}">']
    for fraction, label in zip((0, 0.5, 1), labels):
        parts.append(f'<span style="--at: {1 - fraction}" class="axis">{label}</span>')
    parts.append(f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" aria-hidden="true" '
                 'xmlns="http://www.w3.org/2000/svg">')
    for fraction in (0, 0.5, 1):
        level = y(top * fraction)
        parts.append(f'<line x1="0" x2="{WIDTH}" y1="{level:.1f}" y2="{level:.1f}" class="grid" {stroke}/>')
    for line in chart.lines:
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        title = f"<title>{escape(line.label)}</title>"
        for run in ([line.points] if line.dashed else _runs(line.points, gap)):
            # A run of one reading is a dot: a line of no length with round ends.
            coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in (run * 2 if len(run) == 1 else run))
            width = 5 if len(run) == 1 else 1.8
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{line.color}" stroke-width="{width}" '
                         f'stroke-linecap="round" {stroke}{dash}>{title}</polyline>')
    parts.append("</svg>")
    now = escape(gettext("now"))
    parts.append(f'<span class="axis">{localtime(since):%H:%M}</span><span class="axis">{now}</span></div>')
    return "".join(parts)


def _number(value: float) -> str:
    """An axis label: whole numbers with separators from 100 up, else three
    significant digits (an idle service's CPU is 0.02 %, not 0.0)."""
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
