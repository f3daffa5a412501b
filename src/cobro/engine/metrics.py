"""Prometheus metrics of the server and the workers (prometheus-client).

Counters count what this process did: messages planned (per company), sent and failed
(per channel), runs and their durations. The queue lag is read from the database at each
scrape, so every process reports the same figure: how long the oldest row that is ready
has been waiting to be sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import and_, func, select

from cobro.domain.model import OutboxStatus
from cobro.engine.dispatch import DispatchReport
from cobro.engine.outbox import IS_PROMPT
from cobro.store import tables as t
from cobro.workspace import Workspace, utcnow

PLANNED = Counter("cobro_messages_planned", "Messages planned into the outbox", ["company"])
SENT = Counter("cobro_messages_sent", "Deliveries accepted by a channel", ["company", "channel"])
FAILED = Counter(
    "cobro_messages_failed",
    "Claims that failed for good (channel: the first one tried, none: no address)",
    ["company", "channel"],
)
RUN_SECONDS = Histogram(
    "cobro_run_duration_seconds",
    "How long a company's run took (planning, and sending when the run sends)",
    ["company"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
SHARD_SECONDS = Histogram(
    "cobro_shard_duration_seconds",
    "How long sending one shard of outbox rows took",
    ["company"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)


def count_run(company: str, planned: int, seconds: float) -> None:
    """Add a run's planned messages and its duration."""
    PLANNED.labels(company).inc(planned)
    RUN_SECONDS.labels(company).observe(seconds)


def count_dispatch(company: str, report: DispatchReport) -> None:
    """Add a dispatch's deliveries and failures to the counters."""
    for channel, n in report.by_channel.items():
        SENT.labels(company, channel).inc(n)
    for failure in report.failures:
        FAILED.labels(company, failure.channel).inc()


class QueueLag(Collector):
    """``cobro_queue_lag_seconds{company}``, ``cobro_prompt_lag_seconds{company}`` and
    ``cobro_outbox_ready{company}``, read at each scrape from the companies' databases.
    The prompt lag is that of the rows no day's run planned (event notices such as
    receipts, resends, pay links asked for on a call; webhook deliveries aside), which go
    ahead of the day's claims: while a day's claims go out, the queue lag is their age
    and the prompt lag stays near zero unless the dispatchers fall behind the events."""

    def __init__(
        self, companies: Callable[[], Sequence[Workspace]], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.companies = companies
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "cobro_queue_lag_seconds",
            "Age of the oldest outbox row that is due and not sent",
            labels=["company"],
        )
        prompt = GaugeMetricFamily(
            "cobro_prompt_lag_seconds",
            "Age of the oldest outbox row due and not sent that no day's run planned "
            "(event notices, resends)",
            labels=["company"],
        )
        ready = GaugeMetricFamily(
            "cobro_outbox_ready", "Outbox rows due and not sent", labels=["company"]
        )
        now = self.clock()
        o = t.outbox.c
        unsent = o.status.in_([OutboxStatus.PLANNED.value, OutboxStatus.SENDING.value])
        for ws in self.companies():
            due = and_(o.company_id == ws.company_id, unsent, o.next_attempt_at <= now)
            with ws.engine.connect() as conn:
                oldest, count = conn.execute(
                    select(func.min(o.next_attempt_at), func.count()).where(due)
                ).one()
                first = conn.execute(  # from ix_outbox_prompt
                    select(func.min(o.next_attempt_at)).where(due, IS_PROMPT)
                ).scalar_one()
            slug = ws.config.company.id
            lag.add_metric([slug], _age(now, oldest))
            prompt.add_metric([slug], _age(now, first))
            ready.add_metric([slug], float(count))
        yield lag
        yield prompt
        yield ready


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max((now - _aware(since)).total_seconds(), 0.0)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def register_lag(companies: Callable[[], Sequence[Workspace]]) -> QueueLag:
    """Report the queue lag of ``companies`` in the default registry (once per process)."""
    collector = QueueLag(companies)
    REGISTRY.register(collector)
    return collector


def exposition() -> tuple[bytes, str]:
    """The default registry in the text format: (body, content type)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# Where the workers of ``cobro serve --workers N`` keep their counters, one file each
# (prometheus-client's multiprocess mode): set by the server's process before it starts
# them, read by prometheus-client when it is imported.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def app_metrics(
    companies: Callable[[], Sequence[Workspace]], clock: Callable[[], datetime] = utcnow
) -> Callable[[], tuple[bytes, str]]:
    """The ``/metrics`` of a web application: this process's counters and the queue lag of
    the companies it serves (a registry of its own: one process may build several apps).
    In a worker of ``cobro serve --workers N``, the counters and histograms of every
    worker of the server, summed (those of a worker that died included), whichever
    worker answers the scrape."""
    import os

    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    own = CollectorRegistry(auto_describe=False)
    own.register(QueueLag(companies, clock))
    counted = REGISTRY
    if os.environ.get(MULTIPROCESS_DIR):
        from prometheus_client.multiprocess import MultiProcessCollector

        counted = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(counted)  # type: ignore[no-untyped-call]

    def render() -> tuple[bytes, str]:
        return generate_latest(counted) + generate_latest(own), CONTENT_TYPE_LATEST

    return render
