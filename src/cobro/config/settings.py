"""Settings of the scaled-out processes (``cobro worker``, ``cobro scheduler``), read from
the environment (``COBRO_...``) with pydantic-settings. A company's own configuration stays
in its ``cobro.yaml``; these say where the shared services are and how the work is cut."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """``COBRO_BROKER_URL``, ``COBRO_DATABASE_URL``, ``COBRO_WORKSPACE``... (see
    docs/operations.md#scaling-out-celery-workers-and-the-scheduler)."""

    model_config = SettingsConfigDict(env_prefix="COBRO_", extra="ignore")

    # amqp://USER:PASSWORD@HOST:5672// (RabbitMQ) or redis://HOST:6379/0
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    # None: the workspace's own (cobro.db, or a server root's cobro-server.yaml)
    database_url: str | None = None
    # A company's workspace, or a server root holding several companies
    workspace: Path = Path(".")
    # The broker's queue the tasks go through (one per deployment)
    queue: str = "cobro"
    # Debtors per shard: a company's ready rows are cut into tasks of this many debtors
    shard_debtors: int = Field(default=200, ge=1)
    # Debtors per shard of a day's plan: a company's daily plan is cut into tasks of
    # about this many consecutive debtors (one task during the go-live ramp)
    plan_shard_debtors: int = Field(default=50_000, ge=1)
    # How often the scheduler looks for runs to start and rows to queue
    tick_seconds: float = Field(default=30.0, gt=0)
    # A queued row not sent by then is queued again (a task lost with its broker)
    requeue_after_s: float = Field(default=600.0, gt=0)
    # Messages per second each channel's provider accepts, shared by every worker of a
    # company, e.g. COBRO_RATE_LIMITS='{"email": 50, "sms": 10}'; a channel not named is
    # not paced
    rate_limits: dict[str, float] = Field(default_factory=dict)
    # Where a worker answers /healthz and /metrics (0: not at all)
    metrics_port: int = Field(default=9810, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    @property
    def prompt_queue(self) -> str:
        """The queue of the rows no day's run planned (an event's notice, a resend), which
        every worker consumes beside ``queue``: ``<queue>.prompt``."""
        return f"{self.queue}.prompt"
