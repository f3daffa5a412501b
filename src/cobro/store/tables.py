"""The database schema, as SQLAlchemy Core tables shared by SQLite and PostgreSQL.

Each table is defined the first time it is read (``tables.contacts``), with the tables
its foreign keys refer to: defining all of them, their columns, constraints and indexes,
is about a tenth of the start-up of a command that uses four (``cobro contacts list``).
``metadata`` holds every table: reading it defines those not defined yet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite keeps naive UTC)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(DateTime(timezone=dialect.name != "sqlite"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# How each table is defined, by the module's name for it.
_DEFINITIONS: dict[str, Callable[[], Table]] = {}
# The module's name for a table whose name in the database differs.
_NAMED = {"payment_allocations": "allocations"}
_DEFINING = threading.RLock()


def _defines(definition: Callable[[], Table]) -> Callable[[], Table]:
    _DEFINITIONS[definition.__name__.removeprefix("_")] = definition
    return definition


def _table(name: str) -> Table:
    """The table the module calls ``name``, defined now if it is not yet, with the tables
    its foreign keys refer to (a column typed by the column it refers to gets its type
    when that table is defined)."""
    found = globals().get(name)
    if isinstance(found, Table):
        return found
    with _DEFINING:
        found = globals().get(name)
        if isinstance(found, Table):
            return found
        table = globals()[name] = _DEFINITIONS[name]()
        for key in table.foreign_keys:
            referred = key.target_fullname.partition(".")[0]
            _table(_NAMED.get(referred, referred))
        return table


def defined() -> list[str]:
    """The tables defined so far, by their name in the database."""
    return list(_metadata.tables)


if TYPE_CHECKING:
    metadata: MetaData
    companies: Table
    customers: Table
    contacts: Table
    receivables: Table
    payments: Table
    allocations: Table
    credit_applications: Table
    runs: Table
    outbox: Table
    dunning_levels: Table
    claim_items: Table
    deliveries: Table
    delivery_events: Table
    suppressions: Table
    optouts: Table
    evidence: Table
    evidence_checkpoints: Table
    tasks: Table
    events: Table
    subscriptions: Table
    push_subscriptions: Table
    charges: Table
    banking_assignments: Table
    claim_views: Table
    disputes: Table
    promises: Table
    promise_items: Table
    webhook_endpoints: Table
    webhook_attempts: Table
    api_keys: Table
    idempotency_keys: Table
    staff_users: Table
    staff_sessions: Table
    debtor_notes: Table
    audit_log: Table
    daily_runs: Table
    plan_shards: Table
    rate_slots: Table
    customer_terms: Table
    data_version: Table
else:

    def __getattr__(name: str) -> Any:
        if name == "metadata":
            for each in _DEFINITIONS:
                _table(each)
            return _metadata
        if name in _DEFINITIONS:
            return _table(name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@_defines
def _companies() -> Table:
    return Table(
        "companies",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("slug", String(40), nullable=False, unique=True),
        Column("name", String(200), nullable=False),
        Column("covered_through", Date),
        Column("policy_fingerprint", String(64)),
        Column("notice_fingerprint", String(64)),  # subscription reminder settings ...
        Column("notice_settings_since", UTCDateTime),  # ... and since when they hold
        Column("go_live_on", Date),  # the date of the first run (go-live ramp)
        Column("created_at", UTCDateTime, nullable=False),
    )


@_defines
def _customers() -> Table:
    table = Table(
        "customers",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("external_id", String(100), nullable=False),
        Column("name", String(300), nullable=False),
        Column("kind", String(20), nullable=False, server_default="person"),
        Column("group_name", String(100)),
        Column("language", String(10)),
        # IANA time zone (Europe/Madrid): the hours channels may write to the debtor are theirs;
        # none: the company's.
        Column("timezone", String(64)),
        Column("email", String(320)),
        Column("phone", String(40)),
        Column("invalid_email", String(320)),  # an address the import refused, kept for staff
        Column("invalid_phone", String(100)),
        Column("tags", String(500), nullable=False, server_default=""),
        Column("attributes", JSON),
        Column("policy", String(40)),
        Column("effective_policy", String(40)),
        Column("blocked", Boolean, nullable=False, server_default=text("false")),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "external_id"),
        Index(None, "company_id", "effective_policy"),
        Index(
            "ix_customers_blocked",
            "company_id",
            "blocked",
            sqlite_where=text("blocked = 1"),
        ),
    )
    # The dashboard's debtor search and reports read these in index order.
    Index("ix_customers_company_id_name", table.c.company_id, table.c.name, table.c.id)
    Index("ix_customers_company_id_email", table.c.company_id, table.c.email)
    Index("ix_customers_company_id_phone", table.c.company_id, table.c.phone)
    # The API's list of debtors pages through a company's debtors in the order of their ids.
    Index("ix_customers_company_id_id", table.c.company_id, table.c.id)
    return table


@_defines
def _contacts() -> Table:
    return Table(
        "contacts",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("external_id", String(100), nullable=False),
        Column("name", String(300), nullable=False),
        Column("email", String(320)),
        Column("phone", String(40)),
        Column("invalid_email", String(320)),
        Column("invalid_phone", String(100)),
        Column("roles", String(200), nullable=False, server_default=""),
        Column("language", String(10)),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "external_id"),
        Index(None, "customer_id"),
    )


@_defines
def _receivables() -> Table:
    table = Table(
        "receivables",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("external_id", String(100), nullable=False),
        Column("kind", String(20), nullable=False, server_default="invoice"),
        Column("number", String(100), nullable=False),
        Column("invoice_number", String(100)),
        Column("issued_on", Date),
        Column("due_on", Date, nullable=False),
        Column("currency", String(3), nullable=False),
        Column("amount_minor", BigInteger, nullable=False),
        Column("balance_minor", BigInteger, nullable=False),
        Column("description", String(500)),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "external_id"),
        Index(None, "customer_id"),
        # The open items by due date, read from the index alone (id, company, due date,
        # debtor, balance, currency): the debtors an item of which reaches a phase on the
        # day. (The currency keeps it as wide as the index below, which SQLite would
        # otherwise take instead to read every open item of each debtor.)
        Index(
            "ix_receivables_open_due",
            "company_id",
            "due_on",
            "customer_id",
            "balance_minor",
            "currency",
            sqlite_where=text("balance_minor > 0"),
            postgresql_include=["id"],
        ),
        # The open items of each debtor in turn, read from the index alone (id, company,
        # debtor, balance, due date, currency): the items a claim or a debt notice lists
        # (and, in a simulation, their totals), and the candidates' debt when the day is
        # planned. (SQLite keeps the id in every index;
        # PostgreSQL, only where it is included.)
        Index(
            "ix_receivables_open_customer",
            "company_id",
            "customer_id",
            "balance_minor",
            "due_on",
            "currency",
            sqlite_where=text("balance_minor > 0"),
            postgresql_include=["id"],
        ),
    )
    # A receivable's issue day: its issue date, else its due date (docs/reports.md, sales).
    Index(
        "ix_receivables_issue_day",
        table.c.company_id,
        func.coalesce(table.c.issued_on, table.c.due_on),
    )
    return table


@_defines
def _payments() -> Table:
    table = Table(
        "payments",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("external_id", String(100), nullable=False),
        Column("receivable_id", ForeignKey("receivables.id")),
        Column("paid_on", Date, nullable=False),
        Column("currency", String(3), nullable=False),
        Column("amount_minor", BigInteger, nullable=False),
        Column("unallocated_minor", BigInteger, nullable=False),
        # A reversal (returned direct debit) names the payment it undoes; its amounts are negative.
        Column("reverses_id", ForeignKey("payments.id")),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "external_id"),
        UniqueConstraint("reverses_id"),
    )
    Index("ix_payments_company_id_paid_on", table.c.company_id, table.c.paid_on)
    return table


@_defines
def _allocations() -> Table:
    return Table(
        "payment_allocations",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("payment_id", ForeignKey("payments.id"), nullable=False),
        Column("receivable_id", ForeignKey("receivables.id"), nullable=False),
        Column("amount_minor", BigInteger, nullable=False),
        Index(None, "receivable_id"),
    )


# What each credit note (a receivable of kind credit_note) took off the debtor's receivables.
@_defines
def _credit_applications() -> Table:
    return Table(
        "credit_applications",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("credit_note_id", ForeignKey("receivables.id"), nullable=False),
        Column("receivable_id", ForeignKey("receivables.id"), nullable=False),
        Column("amount_minor", BigInteger, nullable=False),
        Index(None, "credit_note_id"),
        Index(None, "receivable_id"),
    )


@_defines
def _runs() -> Table:
    return Table(
        "runs",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("run_on", Date, nullable=False),
        Column("as_of", UTCDateTime, nullable=False),
        Column("planned", Integer, nullable=False, server_default="0"),
        Column("sent", Integer, nullable=False, server_default="0"),
        Column("failed", Integer, nullable=False, server_default="0"),
        Column("skipped", Integer, nullable=False, server_default="0"),
        Column("started_at", UTCDateTime, nullable=False),
        Column("finished_at", UTCDateTime),
        Column("report", JSON),  # the run's report once it has finished (``RunReport.to_json``)
        Column("error", String(2000)),  # why a run stopped before it finished
        Index(None, "company_id", "run_on"),
    )


@_defines
def _outbox() -> Table:
    return Table(
        "outbox",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("step", String(90), nullable=False),
        Column("occurrence_on", Date, nullable=False),
        Column("status", String(12), nullable=False),
        Column("due_at", UTCDateTime, nullable=False),
        Column("next_attempt_at", UTCDateTime, nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("run_id", ForeignKey("runs.id")),
        Column("reason", String(500)),
        Column("payload", JSON),  # what an event-driven notice needs (charge, recipients, ...)
        Column("created_at", UTCDateTime, nullable=False),
        Column("finished_at", UTCDateTime),
        # While ``sending``: which process holds the row, and until when (real clock).
        Column("lease_until", UTCDateTime),
        Column("holder", String(120)),
        # The first temporary failure of a row still being retried (the retry budget runs from it).
        Column("failing_since", UTCDateTime),
        # Until when the row's id sits in the broker's queue (Celery workers): the scheduler
        # does not queue it again before then.
        Column("queued_until", UTCDateTime),
        UniqueConstraint(
            "company_id", "customer_id", "step", "occurrence_on", name="uq_outbox_key"
        ),
        # A dispatcher's batches in order (``id`` breaks the ties of the day's claims, all
        # due at one instant), read from the index without sorting them.
        Index(None, "company_id", "status", "next_attempt_at", "id"),
        Index(None, "run_id"),
        # Webhook deliveries (steps ``webhook/...``): found without the claims, in order.
        Index(
            "ix_outbox_webhooks",
            "company_id",
            "status",
            "next_attempt_at",
            "id",
            sqlite_where=text("step LIKE 'webhook/%'"),
            postgresql_where=text("step LIKE 'webhook/%'"),
        ),
        # Rows no day's run planned (an event's notice, a resend, a pay link asked for on a
        # call), webhook deliveries aside: a dispatcher takes them ahead of the day's claims
        # (``cobro.engine.dispatch``).
        Index(
            "ix_outbox_prompt",
            "company_id",
            "status",
            "next_attempt_at",
            "id",
            sqlite_where=text("run_id IS NULL AND step NOT LIKE 'webhook/%'"),
            postgresql_where=text("run_id IS NULL AND step NOT LIKE 'webhook/%'"),
        ),
        # The API's pages of claims, in the order of their ids: all of them, and by status.
        Index(None, "company_id", "id"),
        Index(None, "company_id", "status", "id"),
    )


# Where each debtor stands in its policy: the phase last claimed, when, how many repeats;
# ``review_on`` is the next day the debtor must be looked at even if no item changes.
@_defines
def _dunning_levels() -> Table:
    return Table(
        "dunning_levels",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("policy", String(40), nullable=False),
        Column("phase_key", String(40)),
        Column("reached_on", Date),
        Column("repeats", Integer, nullable=False, server_default="0"),
        Column("review_on", Date),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("customer_id"),
        Index(None, "company_id", "review_on"),
    )


@_defines
def _claim_items() -> Table:
    return Table(
        "claim_items",
        _metadata,
        Column("id", Integer, primary_key=True),
        # No foreign keys: the planner writes the items in one INSERT ... SELECT from the
        # outbox rows and receivables they name, and neither is ever deleted; checking each
        # item (a look-up and a row lock in each table on PostgreSQL) took two thirds of
        # the time of writing a day's items (migration 0025).
        Column("company_id", Integer, nullable=False),
        Column("outbox_id", Integer, nullable=False),
        Column("receivable_id", Integer, nullable=False),
        Column("step", String(90), nullable=False),
        Column("repeat_no", Integer, nullable=False),
        Column("balance_minor", BigInteger),
        UniqueConstraint("receivable_id", "step", "repeat_no", name="uq_claim_item_occurrence"),
        Index(None, "outbox_id"),
    )


@_defines
def _deliveries() -> Table:
    table = Table(
        "deliveries",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("outbox_id", ForeignKey("outbox.id"), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("channel", String(20), nullable=False),
        Column("recipient", String(320), nullable=False),
        Column("recipient_role", String(30), nullable=False),
        Column("status", String(12), nullable=False),
        Column("message_id", String(300)),
        Column("provider_id", String(300)),
        Column("error", String(1000)),
        Column("cost", Numeric(12, 6), nullable=False, server_default="0"),
        Column("body_sha256", String(64)),
        Column("at", UTCDateTime, nullable=False),
        # The message exactly as handed to the channel (RFC 5322 bytes, SMS text, push JSON),
        # zlib-compressed, and the SHA-256 of the uncompressed bytes (also in its evidence entry).
        Column("message_zlib", LargeBinary),
        Column("message_sha256", String(64)),
        # Where the delivery stands (``cobro.domain.delivery``), and since when; ``status``
        # above stays what the channel answered on the spot (sent, failed, or sending while
        # that answer is not recorded yet).
        Column("state", String(20), nullable=False, server_default="sent"),
        Column("state_at", UTCDateTime),
        # The delivery's own reference, in its status callback URL and VERP return path.
        Column("ref", String(40)),
        Index(None, "outbox_id"),
        Index(None, "ref"),
        Index(None, "provider_id"),
        Index(None, "message_id"),
    )
    Index("ix_deliveries_company_id_at", table.c.company_id, table.c.at)
    # The dashboard's message log finds the messages to an address by it (any case).
    Index(
        "ix_deliveries_company_id_recipient",
        table.c.company_id,
        func.lower(table.c.recipient),
    )
    return table


# What was learned about a delivery after it was recorded: a status callback, a bounce,
# a complaint. Each is also an evidence entry (``delivery.state``).
@_defines
def _delivery_events() -> Table:
    return Table(
        "delivery_events",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("delivery_id", ForeignKey("deliveries.id"), nullable=False),
        Column("state", String(20), nullable=False),
        Column("source", String(40), nullable=False),  # twilio, bounce, complaint, dispatch
        Column("detail", String(1000)),
        Column("at", UTCDateTime, nullable=False),
        Index(None, "delivery_id"),
    )


# Addresses no message goes to any more (a hard bounce, soft bounces past the limit, a
# complaint, an SMS the network could not deliver), per company and channel; soft
# failures are counted here until they suppress.
@_defines
def _suppressions() -> Table:
    return Table(
        "suppressions",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("channel", String(20), nullable=False),
        Column("address", String(320), nullable=False),  # lower-case
        Column("soft_failures", Integer, nullable=False, server_default="0"),
        Column("suppressed_at", UTCDateTime),  # None: only counted so far
        Column("reason", String(40)),  # hard_bounce, soft_bounces, complaint, undelivered
        Column("detail", String(1000)),
        Column("delivery_id", ForeignKey("deliveries.id")),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "channel", "address"),
    )


# A debtor who asked not to be written to on a channel (an SMS reply STOP, the
# unsubscribe link of an email, staff, an import).
@_defines
def _optouts() -> Table:
    return Table(
        "optouts",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("channel", String(20), nullable=False),
        Column("source", String(20), nullable=False),  # sms_reply, unsubscribe, staff, import
        Column("detail", String(500)),
        Column("at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "customer_id", "channel"),
        Index(None, "customer_id"),
    )


@_defines
def _evidence() -> Table:
    return Table(
        "evidence",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("kind", String(30), nullable=False),
        Column("customer_id", ForeignKey("customers.id")),
        Column("ref", String(100), nullable=False),
        Column("at", UTCDateTime, nullable=False),
        Column("payload", Text, nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        UniqueConstraint("company_id", "seq"),
        Index(None, "customer_id"),
    )


# Signed chain heads; each is also appended to the workspace's evidence/checkpoints.jsonl.
@_defines
def _evidence_checkpoints() -> Table:
    return Table(
        "evidence_checkpoints",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("head", String(64), nullable=False),
        Column("at", UTCDateTime, nullable=False),
        Column("public_key", String(64), nullable=False),
        Column("signature", String(128), nullable=False),
        UniqueConstraint("company_id", "seq"),
    )


@_defines
def _tasks() -> Table:
    return Table(
        "tasks",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("action_key", String(40), nullable=False),
        Column("created_on", Date, nullable=False),
        Column("due_at", UTCDateTime, nullable=False),
        Column("message", String(2000), nullable=False),
        Column("status", String(10), nullable=False, server_default="open"),
        Column("created_at", UTCDateTime, nullable=False),
        Column("done_at", UTCDateTime),
        # The staff user the task is given to, by email (lower case), kept as text like a
        # note's author: the task outlives the user's account. None: nobody yet.
        Column("assignee", String(320)),
        UniqueConstraint("company_id", "customer_id", "action_key", "created_on"),
        Index(None, "company_id", "status", "due_at"),
        Index(None, "customer_id"),
        Index(None, "company_id", "assignee", "status", "due_at"),
    )


@_defines
def _events() -> Table:
    return Table(
        "events",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("external_id", String(200), nullable=False),
        Column("type", String(60), nullable=False),
        Column("payload", JSON, nullable=False),
        Column("occurred_at", UTCDateTime, nullable=False),
        Column("received_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "external_id"),
    )


@_defines
def _subscriptions() -> Table:
    return Table(
        "subscriptions",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("external_id", String(100), nullable=False),
        Column("plan", String(200), nullable=False),
        Column("kind", String(10), nullable=False, server_default="plan"),
        Column("currency", String(3), nullable=False),
        Column("price_minor", BigInteger, nullable=False),
        Column("cycle", String(20), nullable=False),
        Column("next_charge_on", Date),
        Column("status", String(20), nullable=False),
        Column("pause_from", Date),
        Column("pause_until", Date),
        Column("ends_on", Date),
        Column("charge_known_at", UTCDateTime, nullable=False),
        Column("paid_charges", Integer, nullable=False, server_default="0"),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "external_id"),
        Index(None, "company_id", "next_charge_on"),
        Index(None, "customer_id"),
    )


@_defines
def _push_subscriptions() -> Table:
    return Table(
        "push_subscriptions",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("endpoint", String(1000), nullable=False),
        Column("p256dh", String(120), nullable=False),
        Column("auth", String(60), nullable=False),
        Column("user_agent", String(300)),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        Column("gone_at", UTCDateTime),  # the push service said it no longer exists
        Column("gone_reason", String(300)),
        UniqueConstraint("company_id", "endpoint"),
        Index(None, "customer_id"),
    )


@_defines
def _charges() -> Table:
    return Table(
        "charges",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("subscription_id", ForeignKey("subscriptions.id"), nullable=False),
        Column("external_id", String(100), nullable=False),
        Column("status", String(10), nullable=False),
        Column("currency", String(3), nullable=False),
        Column("amount_minor", BigInteger, nullable=False),
        Column("charged_at", UTCDateTime, nullable=False),
        Column("first_purchase", Boolean, nullable=False),
        Column("reason", String(300)),
        UniqueConstraint("company_id", "external_id"),
        Index(None, "subscription_id"),
    )


@_defines
def _banking_assignments() -> Table:
    return Table(
        "banking_assignments",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("notice_type", String(30), nullable=False),
        Column("contact_id", ForeignKey("contacts.id"), nullable=False),
        Column("assigned_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "notice_type", "contact_id"),
    )


# What a debtor did with a claim's portal link: ``opened`` (a GET of the page, weak: mail
# scanners open links too) or ``read`` (the explicit "I have read it" button, a POST).
@_defines
def _claim_views() -> Table:
    table = Table(
        "claim_views",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("outbox_id", ForeignKey("outbox.id"), nullable=False),
        Column("kind", String(10), nullable=False),
        Column("at", UTCDateTime, nullable=False),
        Column("ip", String(64)),
        Column("user_agent", String(500)),
        Index(None, "outbox_id"),
        Index(None, "customer_id"),
    )
    Index("ix_claim_views_company_id_at", table.c.company_id, table.c.at)
    return table


# An item the debtor (on the portal) or staff (a call) disputes: left out of every claim
# while ``open``; ``accepted`` or ``rejected`` by staff.
@_defines
def _disputes() -> Table:
    return Table(
        "disputes",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("receivable_id", ForeignKey("receivables.id"), nullable=False),
        Column("outbox_id", ForeignKey("outbox.id")),  # the claim whose link it came from
        Column("source", String(10), nullable=False),  # portal | staff
        Column("reason", String(2000), nullable=False),
        Column("attachment_name", String(200)),
        Column("attachment_type", String(100)),
        Column("attachment_zlib", LargeBinary),
        Column("attachment_sha256", String(64)),
        Column("status", String(10), nullable=False, server_default="open"),
        Column("opened_at", UTCDateTime, nullable=False),
        Column("ip", String(64)),
        Column("user_agent", String(500)),
        Column("resolved_at", UTCDateTime),
        Column("resolution", String(2000)),
        Index(None, "company_id", "status"),
        Index(None, "receivable_id"),
    )


# A promise to pay some items by a date: they are paused until ``promised_on`` plus
# ``grace_days``; unpaid then, the promise is ``broken`` and dunning resumes.
@_defines
def _promises() -> Table:
    return Table(
        "promises",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("outbox_id", ForeignKey("outbox.id")),
        Column("source", String(10), nullable=False),  # portal | staff
        Column("promised_on", Date, nullable=False),
        Column("grace_days", Integer, nullable=False),
        Column("note", String(2000)),
        Column("status", String(10), nullable=False, server_default="open"),  # open|kept|broken
        Column("created_at", UTCDateTime, nullable=False),
        Column("ip", String(64)),
        Column("user_agent", String(500)),
        Column("settled_at", UTCDateTime),
        Index(None, "company_id", "status", "promised_on"),
        Index(None, "customer_id"),
    )


@_defines
def _promise_items() -> Table:
    return Table(
        "promise_items",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("promise_id", ForeignKey("promises.id"), nullable=False),
        Column("receivable_id", ForeignKey("receivables.id"), nullable=False),
        Column("balance_minor", BigInteger, nullable=False),  # the balance promised
        UniqueConstraint("promise_id", "receivable_id"),
        Index(None, "receivable_id"),
    )


# Where a company's events are posted (``cobro.engine.webhooks``): a URL, the event types
# it subscribes to (comma-separated) and the Standard Webhooks secret that signs each post.
# Each delivery is an outbox row (step ``webhook/ENDPOINT/TYPE/REF``).
@_defines
def _webhook_endpoints() -> Table:
    return Table(
        "webhook_endpoints",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("name", String(40), nullable=False),
        Column("url", String(2000), nullable=False),
        Column("events", String(1000), nullable=False, server_default=""),
        Column("secret", String(100), nullable=False),
        Column("enabled", Boolean, nullable=False, server_default=text("true")),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "name"),
    )


# Each attempt of a webhook delivery: when, the HTTP status (None: no answer), the error
# (None: accepted) and how long it took.
@_defines
def _webhook_attempts() -> Table:
    return Table(
        "webhook_attempts",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("outbox_id", ForeignKey("outbox.id"), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("at", UTCDateTime, nullable=False),
        Column("status_code", Integer),
        Column("error", String(1000)),
        Column("duration_ms", Integer, nullable=False),
        Index(None, "outbox_id"),
    )


# The partial indexes' predicates on PostgreSQL. Declaring them above would load the
# PostgreSQL dialect whenever the schema is imported, which a command on SQLite does not
# need (a tenth of its start-up); ``postgres_predicates`` adds them when a PostgreSQL
# engine is made (``cobro.store.db.make_engine``).
_POSTGRES_WHERE = {
    "ix_customers_blocked": "blocked",
    "ix_receivables_open_due": "balance_minor > 0",
    "ix_receivables_open_customer": "balance_minor > 0",
    "ix_outbox_webhooks": "step LIKE 'webhook/%'",
}


def postgres_predicates() -> None:
    """Give the partial indexes their PostgreSQL ``WHERE`` (idempotent)."""
    for table in (_table("customers"), _table("receivables"), _table("outbox")):
        for index in table.indexes:
            where = _POSTGRES_WHERE.get(str(index.name))
            if where is not None and index.dialect_options["postgresql"]["where"] is None:
                index.dialect_kwargs["postgresql_where"] = text(where)


# Keys the REST API accepts, per company: only a digest of the secret part is kept.
@_defines
def _api_keys() -> Table:
    return Table(
        "api_keys",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("prefix", String(16), nullable=False, unique=True),  # public: names the key
        Column("digest", String(64), nullable=False),  # sha256 of the whole key
        Column("name", String(100), nullable=False),
        Column("role", String(20), nullable=False),  # admin | collector | read-only
        Column("created_at", UTCDateTime, nullable=False),
        Column("revoked_at", UTCDateTime),
        Column("last_used_at", UTCDateTime),
        Index(None, "company_id", "name"),
    )


# What a creating POST with an ``Idempotency-Key`` answered, to answer a retry the same.
@_defines
def _idempotency_keys() -> Table:
    return Table(
        "idempotency_keys",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("key", String(255), nullable=False),
        Column("request", String(64), nullable=False),  # sha256 of method, path and body
        Column("status", Integer),  # None while the first request is being answered
        Column("body", LargeBinary),
        Column("content_type", String(100)),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("company_id", "key"),
        Index(None, "created_at"),
    )


# Staff who log in to the dashboard, per company: the password only as an argon2id hash.
@_defines
def _staff_users() -> Table:
    return Table(
        "staff_users",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("email", String(320), nullable=False),  # lower case
        Column("password_hash", String(200), nullable=False),
        Column("role", String(20), nullable=False),  # admin | collector | read-only
        Column("created_at", UTCDateTime, nullable=False),
        Column("password_changed_at", UTCDateTime, nullable=False),
        Column("last_login_at", UTCDateTime),
        UniqueConstraint("company_id", "email"),
        Index(None, "email"),
    )


# A staff user's dashboard session: the cookie holds a random token, the row its SHA-256.
@_defines
def _staff_sessions() -> Table:
    return Table(
        "staff_sessions",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("user_id", ForeignKey("staff_users.id"), nullable=False),
        Column("digest", String(64), nullable=False, unique=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("last_seen_at", UTCDateTime, nullable=False),
        Column("expires_at", UTCDateTime, nullable=False),  # absolute end, whatever the activity
        Column("ip", String(64)),
        Column("user_agent", String(500)),
        Index(None, "user_id"),
    )


# What staff wrote down about a debtor (a call, an agreement); the author's email is kept
# as text, so a note outlives its author's account.
@_defines
def _debtor_notes() -> Table:
    return Table(
        "debtor_notes",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("customer_id", ForeignKey("customers.id"), nullable=False),
        Column("author", String(320), nullable=False),
        Column("text", String(2000), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Index(None, "customer_id"),
    )


# What staff changed from the dashboard: the configuration (each value's path, before and
# after), banking contacts, and what they recorded on a debtor's account. The user's
# email is kept as text, so an entry outlives its author's account.
@_defines
def _audit_log() -> Table:
    return Table(
        "audit_log",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("at", UTCDateTime, nullable=False),
        Column("actor", String(320), nullable=False),  # the staff user's email
        Column("role", String(20), nullable=False),
        Column("action", String(60), nullable=False),  # e.g. config.communications, debtor.note
        Column("subject", String(300)),  # what it was about: a notice type, an action, a debtor
        Column("customer_id", ForeignKey("customers.id")),
        Column("changes", JSON, nullable=False),  # [{"path", "old", "new"}] or what was recorded
        Index(None, "company_id", "at", "id"),
        Index(None, "customer_id"),
    )


# The daily run each company is owed (Celery scheduler): one row per company and day,
# inserted by whichever scheduler gets there first; the run's task fills in the rest.
# When the day's plan starts (``cobro.engine.plan_shards``) it records what every shard
# of it plans from: the company's ``covered_through`` and ``go_live_on`` before the day,
# and what the start of the day did (accounts released, promises settled).
@_defines
def _daily_runs() -> Table:
    return Table(
        "daily_runs",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("run_on", Date, nullable=False),
        Column("queued_at", UTCDateTime, nullable=False),
        Column("run_id", ForeignKey("runs.id")),
        Column("finished_at", UTCDateTime),
        Column("started_at", UTCDateTime),  # the start of the day's plan committed
        Column("covered_before", Date),
        Column("go_live_on", Date),
        Column("unblocked", Integer, nullable=False, server_default="0"),
        Column("promises_kept", Integer, nullable=False, server_default="0"),
        Column("promises_broken", Integer, nullable=False, server_default="0"),
        UniqueConstraint("company_id", "run_on", name="uq_daily_runs_day"),
    )


# A company's day planned in shards (``cobro.engine.plan_shards``): the claims of the
# debtors whose ids run from ``first_customer_id`` to ``last_customer_id`` (NULL: no
# upper bound), planned by one task; ``planned_at`` once they are, with what it planned.
@_defines
def _plan_shards() -> Table:
    return Table(
        "plan_shards",
        _metadata,
        Column("id", Integer, primary_key=True),
        Column("company_id", ForeignKey("companies.id"), nullable=False),
        Column("run_on", Date, nullable=False),
        Column("first_customer_id", Integer, nullable=False),
        Column("last_customer_id", Integer),
        Column("planned_at", UTCDateTime),
        Column("planned", Integer, nullable=False, server_default="0"),
        Column("items", Integer, nullable=False, server_default="0"),
        Column("candidates", Integer, nullable=False, server_default="0"),
        Column("held", Integer, nullable=False, server_default="0"),
        Column("deferred", Integer, nullable=False, server_default="0"),
        UniqueConstraint("company_id", "run_on", "first_customer_id", name="uq_plan_shards_first"),
    )


# Each provider's pace, shared by every worker: the next free instant of a channel (seconds
# since the epoch), moved on by one interval per message.
@_defines
def _rate_slots() -> Table:
    return Table(
        "rate_slots",
        _metadata,
        Column("company_id", ForeignKey("companies.id"), primary_key=True),
        Column("channel", String(40), primary_key=True),
        Column("next_at", Float, nullable=False),
    )


# The words the dashboard's debtor search finds a debtor by, lower case: each word of the
# name, the id, the email address, and the phone's digits (with and without the country
# code, marked ``#``). A search reads them by prefix (``cobro.engine.debtor_terms``); on
# PostgreSQL the column sorts byte by byte, so a prefix is a range of the index.
@_defines
def _customer_terms() -> Table:
    return Table(
        "customer_terms",
        _metadata,
        Column("company_id", ForeignKey("companies.id"), primary_key=True),
        Column(
            "term",
            String(320).with_variant(String(320, collation="C"), "postgresql"),
            primary_key=True,
        ),
        Column("customer_id", ForeignKey("customers.id"), primary_key=True),
        Index(None, "customer_id", "term"),
    )


# One counter per database, moved on by every transaction that writes (``cobro.store.db.
# count_changes``): what a page computed from the whole company is kept by (the overview).
@_defines
def _data_version() -> Table:
    return Table(
        "data_version",
        _metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("version", BigInteger, nullable=False),
    )
