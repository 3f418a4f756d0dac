"""What `GET /metrics` shows, in the Prometheus text format: one registry per `Metrics`, so a
process (or a test) holds its own and nothing lands in prometheus-client's global default.

The core reports events through small explicit calls (`job_started`, `job_ended`, `failover`,
`idle_gap` …); what is a state rather than an event (the queue, the backends, the outboxes) is
read when Prometheus scrapes, from the sources the service and the adapters `watch`. Labels stay
few: outcomes, platforms and backends (the operator's WEBUI_NAMES label or its 1-based index,
never a URL or a credential); per-user queue lengths are a histogram, not one series per user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "OUTCOMES",
    "BackendState",
    "Metrics",
    "OutboxCounts",
    "Snapshot",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# how a job ended: delivered (charged), failed and undelivered (refunded), cancelled (refunded)
OUTCOMES = ("delivered", "failed", "undelivered", "cancelled")
# seconds: from a quick small picture to a long hires batch (and a long wait in the queue)
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RUN_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
# seconds a backend stood idle while work waited: good is a few milliseconds
GAP_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)
# jobs queued by one user (bounded by MAX_QUEUED_PER_USER in practice)
PER_USER_BUCKETS = (1, 2, 3, 5, 10, 20, 50)


@dataclass(frozen=True)
class BackendState:
    """One backend as /healthz and /metrics show it."""

    label: str  # WEBUI_NAMES' name, else its 1-based index in WEBUI_URLS
    up: bool
    running: int = 0
    cooling: bool = False
    error: str = ""


@dataclass(frozen=True)
class Snapshot:
    """The queue and the backends at one moment."""

    queued: int = 0
    running: int = 0
    per_user: Sequence[int] = ()  # queued jobs of each user who has any
    backends: Sequence[BackendState] = ()


class OutboxCounts(Protocol):
    """What an adapter's outbox counts (adapters/kit/outbox.py)."""

    sent: int
    retries: int
    floods: int
    gave_up: int


@dataclass
class _Sources:
    snapshot: Callable[[], Snapshot] | None = None
    outboxes: dict[str, list[OutboxCounts]] = field(default_factory=dict)


class Metrics:
    """drawbridge's metrics in a registry of their own."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._sources = _Sources()
        self.jobs = Counter(
            "drawbridge_jobs",
            "Jobs that ended, by outcome (delivered, failed, undelivered, cancelled).",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:  # every series exists from the start, at 0
            self.jobs.labels(outcome)
        self.credits = Counter(
            "drawbridge_credits_spent",
            "Credits charged for delivered jobs (refunded jobs are not counted).",
            registry=registry,
        )
        self.wait = Histogram(
            "drawbridge_job_wait_seconds",
            "Seconds a job waited in the queue before a backend took it.",
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.run = Histogram(
            "drawbridge_job_run_seconds",
            "Seconds a backend drew a job (its final attempt).",
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.failovers = Counter(
            "drawbridge_failovers",
            "Jobs sent back to the queue for another backend after theirs failed.",
            registry=registry,
        )
        self.gaps = Histogram(
            "drawbridge_gpu_idle_gap_seconds",
            "Seconds a backend stood idle between two jobs while work was waiting.",
            buckets=GAP_BUCKETS,
            registry=registry,
        )
        registry.register(_StateCollector(self._sources))
        if process:
            ProcessCollector(registry=registry)

    # --- events the core reports -----------------------------------------------------------
    def job_started(self, waited: float) -> None:
        """A job was sent to a backend for the first time after `waited` seconds queued."""
        self.wait.observe(max(0.0, waited))

    def job_ended(self, outcome: str, *, cost: int = 0, ran: float | None = None) -> None:
        """A job reached its final state; a delivered one spent its `cost`."""
        self.jobs.labels(outcome).inc()
        if outcome == "delivered" and cost > 0:
            self.credits.inc(cost)
        if ran is not None:
            self.run.observe(max(0.0, ran))

    def failover(self) -> None:
        """A job goes to another backend after its backend failed it."""
        self.failovers.inc()

    def idle_gap(self, seconds: float) -> None:
        """A backend took its next job `seconds` after the last one, work waiting meanwhile."""
        self.gaps.observe(max(0.0, seconds))

    # --- states read at scrape time --------------------------------------------------------
    def watch(self, snapshot: Callable[[], Snapshot]) -> None:
        """Read the queue and the backends from `snapshot` at every scrape."""
        self._sources.snapshot = snapshot

    def watch_outbox(self, platform: str, outbox: OutboxCounts) -> None:
        """Count `outbox`'s sends, retries and give-ups under `platform`."""
        self._sources.outboxes.setdefault(platform, []).append(outbox)

    def snapshot(self) -> Snapshot:
        """The queue and backends now (empty before the service watches anything)."""
        source = self._sources.snapshot
        return source() if source is not None else Snapshot()

    def render(self) -> bytes:
        """Everything in the Prometheus text format (CONTENT_TYPE)."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges of the queue and the backends, and the outboxes' counters, read when scraped."""

    def __init__(self, sources: _Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        source = self._sources.snapshot
        now = source() if source is not None else Snapshot()
        yield GaugeMetricFamily("drawbridge_queue_depth", "Jobs waiting in the queue.", now.queued)
        yield GaugeMetricFamily(
            "drawbridge_jobs_running", "Jobs sent to a backend and not back yet.", now.running
        )
        yield GaugeMetricFamily(
            "drawbridge_queue_users", "Users with at least one job queued.", len(now.per_user)
        )
        yield _per_user(now.per_user)
        up = GaugeMetricFamily(
            "drawbridge_backend_up", "1 when the backend answers and may draw.", labels=["backend"]
        )
        cooling = GaugeMetricFamily(
            "drawbridge_backend_cooling",
            "1 while the backend cools off after a failure (it takes no new job).",
            labels=["backend"],
        )
        busy = GaugeMetricFamily(
            "drawbridge_backend_running", "Jobs in flight on the backend.", labels=["backend"]
        )
        for backend in now.backends:
            up.add_metric([backend.label], 1.0 if backend.up else 0.0)
            cooling.add_metric([backend.label], 1.0 if backend.cooling else 0.0)
            busy.add_metric([backend.label], backend.running)
        yield from (up, cooling, busy)
        counts = {
            "drawbridge_messages_sent": ("Messages the platform accepted.", "sent"),
            "drawbridge_deliveries_retried": (
                "Platform calls (results, status edits) retried after a transient failure.",
                "retries",
            ),
            "drawbridge_flood_waits": ("Platform flood-control pauses (429).", "floods"),
            "drawbridge_deliveries_failed": (
                "Platform calls given up after retrying for DELIVERY_RETRY_SECONDS.",
                "gave_up",
            ),
        }
        for name, (text, attribute) in counts.items():
            family = CounterMetricFamily(name, text, labels=["platform"])
            for platform, outboxes in sorted(self._sources.outboxes.items()):
                family.add_metric([platform], sum(getattr(o, attribute) for o in outboxes))
            yield family


def _per_user(lengths: Sequence[int]) -> GaugeHistogramMetricFamily:
    """How many users have at most N jobs queued, per bucket (cumulative, as `le` reads)."""
    buckets = [
        (_le(bound), float(sum(1 for n in lengths if n <= bound))) for bound in PER_USER_BUCKETS
    ]
    buckets.append(("+Inf", float(len(lengths))))
    return GaugeHistogramMetricFamily(
        "drawbridge_queued_per_user",
        "Users by how many jobs each has queued (a histogram: no series per user).",
        buckets=buckets,
        gsum_value=float(sum(lengths)),
    )


def _le(bound: float) -> str:
    return f"{float(bound)}"
