"""Cloud Run observed: a service's logs from Cloud Logging and its metrics
from Cloud Monitoring (through plain REST: its Python library has no REST
transport), with Monitoring's own message types for the answer.

`Observing` is a part of CloudRunBackend (hakobune.runtime.cloud_run)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ..base import LogLine, MetricSample, ServiceRef
from .client import _in_words


class Observing:
    """Logs and metrics of Cloud Run services."""

    # -- logs (Cloud Logging) ---------------------------------------------------

    def logs(self, ref: ServiceRef, *, tail: int = 200) -> list[LogLine]:
        from google.api_core import exceptions as gexc

        try:
            return self._logs(ref, tail=tail)
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "logging", self)

    def _logs(self, ref: ServiceRef, *, tail: int, revision: str = "") -> list[LogLine]:
        from google.cloud import logging as cloud_logging

        since = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = (
            f'resource.type="cloud_run_revision" AND resource.labels.service_name="{self.service_id(ref)}" '
            f'AND resource.labels.location="{self.region}" AND timestamp>="{since}"'
        )
        if revision:
            query += f' AND resource.labels.revision_name="{revision}"'
        entries = self._client("logging").list_entries(
            resource_names=[f"projects/{self.project}"],
            filter_=query,
            order_by=cloud_logging.DESCENDING,
            max_results=tail,
            page_size=min(tail, 1000),
        )
        lines = []
        for entry in entries:
            payload = entry.payload
            if isinstance(payload, dict):
                text = str(payload.get("message") or payload.get("textPayload") or payload)
            else:
                text = "" if payload is None else str(payload)
            request = getattr(entry, "http_request", None)
            if not text and request:
                text = f"{request.get('requestMethod', '')} {request.get('requestUrl', '')} {request.get('status', '')}".strip()
            labels = (entry.resource.labels if entry.resource else {}) or {}
            lines.append(LogLine(timestamp=entry.timestamp, instance=labels.get("revision_name", ""), text=text))
        lines.reverse()
        return lines

    # -- metrics (Cloud Monitoring) ---------------------------------------------

    METRICS = (
        # (Cloud Monitoring metric, aligner, reducer, group by, sample name, scale)
        ("run.googleapis.com/request_count", "ALIGN_DELTA", "REDUCE_SUM", ("metric.labels.response_code_class",), "request_count", 1.0),
        ("run.googleapis.com/request_latencies", "ALIGN_DELTA", "REDUCE_PERCENTILE_50", (), "request_latency_p50_ms", 1.0),
        ("run.googleapis.com/request_latencies", "ALIGN_DELTA", "REDUCE_PERCENTILE_95", (), "request_latency_p95_ms", 1.0),
        ("run.googleapis.com/request_latencies", "ALIGN_DELTA", "REDUCE_PERCENTILE_99", (), "request_latency_p99_ms", 1.0),
        ("run.googleapis.com/container/cpu/utilizations", "ALIGN_DELTA", "REDUCE_PERCENTILE_95", (), "cpu_percent", 100.0),
        ("run.googleapis.com/container/memory/utilizations", "ALIGN_DELTA", "REDUCE_PERCENTILE_95", (), "memory_percent", 100.0),
        ("run.googleapis.com/container/instance_count", "ALIGN_MAX", "REDUCE_SUM", ("metric.labels.state",), "instance_count", 1.0),
    )

    def metrics(self, ref: ServiceRef, *, window: timedelta = timedelta(minutes=10)) -> list[MetricSample]:
        """The latest one-minute value of each metric in `window`: requests by
        status class, latency percentiles, CPU and memory utilization (percent,
        95th percentile over instances) and instance count by state."""
        from google.cloud import monitoring_v3

        end = datetime.now(timezone.utc).replace(microsecond=0)
        start = end - window
        samples = []
        for metric, aligner, reducer, group_by, sample, scale in self.METRICS:
            params = [
                ("filter", f'metric.type="{metric}" AND resource.type="cloud_run_revision" '
                           f'AND resource.labels.service_name="{self.service_id(ref)}" '
                           f'AND resource.labels.location="{self.region}"'),
                ("interval.startTime", start.isoformat().replace("+00:00", "Z")),
                ("interval.endTime", end.isoformat().replace("+00:00", "Z")),
                ("aggregation.alignmentPeriod", "60s"),
                ("aggregation.perSeriesAligner", aligner),
                ("aggregation.crossSeriesReducer", reducer),
                ("view", "FULL"),
            ] + [("aggregation.groupByFields", field) for field in group_by]
            response = self._client("session").get(
                f"{self._endpoint('monitoring')}/v3/projects/{self.project}/timeSeries", params=params, timeout=30
            )
            body = self._json_or_raise(response, "monitoring", raw=True)
            page = monitoring_v3.ListTimeSeriesResponse.from_json(body, ignore_unknown_fields=True)
            for series in page.time_series:
                if not series.points:
                    continue
                point = max(series.points, key=lambda p: p.interval.end_time)
                value = point.value.double_value or float(point.value.int64_value) or point.value.distribution_value.mean
                labels = dict(series.metric.labels)
                samples.append(MetricSample(point.interval.end_time, sample, round(value * scale, 4), labels))
        return samples
