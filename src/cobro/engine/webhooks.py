"""Outgoing webhooks: a company's endpoints, the events they receive, and their deliveries.

An endpoint is a URL of the company's (a helpdesk, a CRM, a data warehouse) with a name
unique in the company, the event types it subscribes to and a signing secret in the
Standard Webhooks form (``whsec_`` and the base64 of 32 random bytes), shown once when the
endpoint is added.

Events are emitted (``emit``) inside the transaction that records what happened (a claim
sent, a dispute opened, a reading confirmed...): each becomes one outbox row per
subscribed endpoint, so that it commits or rolls back with the event itself. The row's
step is ``webhook/ENDPOINT/TYPE/REF``, where REF names the event's occurrence (the claim's
outbox id, the dispute's id, ...): the outbox's unique key (company, debtor, step, date)
makes an event emitted twice one delivery per endpoint. Every event type is about one
debtor, whose id the row carries like any other outbox row.

The dispatcher posts the rows (``cobro.engine.webhook_dispatch``) with the outbox's
leases, retries and back-off; each attempt is kept in ``webhook_attempts``.
``list_deliveries`` shows them, newest first, with their attempts.
"""

from __future__ import annotations

import base64
import difflib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, func, literal_column, select, update
from sqlalchemy.sql.elements import ColumnElement

from cobro.domain.model import OutboxStatus
from cobro.domain.money import Money
from cobro.errors import CobroError
from cobro.store import tables as t
from cobro.store.db import insert_ignoring

if TYPE_CHECKING:
    from cobro.config import CobroConfig

WEBHOOK_PREFIX = "webhook/"  # outbox steps of webhook deliveries: webhook/ENDPOINT/TYPE/REF
# The same prefix as a literal: the partial index ix_outbox_webhooks is used only when a
# query repeats its predicate word for word.
IS_WEBHOOK: ColumnElement[str] = literal_column("'webhook/%'")

# The event types an endpoint may subscribe to.
EVENT_TYPES = (
    "account.blocked",
    "account.unblocked",
    "claim.sent",
    "claim.failed",
    "message.bounced",
    "read.confirmed",
    "dispute.opened",
    "dispute.resolved",
    "promise.broken",
    "task.created",
)
EVERY = "*"  # an endpoint subscribed to every event type, those added later too
# Sent only to the endpoint a phase or scheduled action names (``webhook:`` in cobro.yaml).
TICKET = "ticket.requested"

NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?"
)
MAX_URL = 2000
SECRET_BYTES = 32
STATUSES = tuple(s.value for s in OutboxStatus)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WebhookError(CobroError):
    """An endpoint or delivery that cannot be added, found or changed as asked."""


# --------------------------------------------------------------------------- checks


def check_url(url: str) -> str:
    """``url`` if it can receive webhooks: http or https, a host, no credentials."""
    url = url.strip()
    shown = re.sub(r"(?<=://)[^@/]*@", "***@", url)  # a password is never echoed
    if not url:
        raise WebhookError("the URL is empty")
    if len(url) > MAX_URL:
        raise WebhookError(f"the URL is {len(url)} characters long; at most {MAX_URL}")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise WebhookError(f"{shown!r} is not a URL: it contains spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise WebhookError(f"{shown!r} is not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookError(f"{shown!r}: a webhook URL starts with https:// (or http://)")
    host = parts.hostname or ""
    if not host:
        raise WebhookError(f"{shown!r}: the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookError(
            f"{parts.scheme}://{host}...: the URL carries a user name or password; leave it "
            "out (each post is signed with the endpoint's secret)"
        )
    if parts.fragment:
        raise WebhookError(f"{shown!r}: a webhook URL has no #fragment")
    if not (_HOST.fullmatch(host) or (":" in host and re.fullmatch(r"[0-9A-Fa-f:.]+", host))):
        raise WebhookError(f"{shown!r}: {host!r} is not a host name or IP address")
    return url


# Names an endpoint cannot take: the API's /webhooks/deliveries is not an endpoint.
RESERVED_NAMES = frozenset({"deliveries"})


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise WebhookError(
            f"endpoint name {name!r}: 1 to 40 letters, digits, '-' and '_' (e.g. helpdesk)"
        )
    if name in RESERVED_NAMES:
        raise WebhookError(f"endpoint name {name!r} is reserved; choose another --name")
    return name


def parse_events(events: str | Iterable[str] | None) -> tuple[str, ...]:
    """The event types of ``a,b,c`` (or a list of them), checked; ``*`` or nothing: every
    type."""
    if events is None:
        return (EVERY,)
    names = events.split(",") if isinstance(events, str) else list(events)
    found: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name == EVERY:
            return (EVERY,)
        if name not in EVENT_TYPES:
            close = difflib.get_close_matches(name, EVENT_TYPES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            why = (
                f"{TICKET!r} goes only to the endpoint a phase or action names (webhook:)"
                if name == TICKET
                else f"unknown event type {name!r}{hint}"
            )
            raise WebhookError(f"{why}; the event types are {', '.join(EVENT_TYPES)}")
        if name not in found:
            found.append(name)
    if not found:
        raise WebhookError(f"no event types given; the event types are {', '.join(EVENT_TYPES)}")
    return tuple(found)


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: ``whsec_`` and base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    id: int
    name: str
    url: str
    events: tuple[str, ...]  # (EVERY,) for every event type
    enabled: bool
    created_at: datetime

    def wants(self, event_type: str) -> bool:
        return EVERY in self.events or event_type in self.events

    def to_json(self, tz: tzinfo = UTC) -> dict[str, Any]:
        """The endpoint as JSON (never its secret)."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "created_at": self.created_at.astimezone(tz).isoformat(),
        }


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        int(row.id),
        str(row.name),
        str(row.url),
        tuple(filter(None, str(row.events).split(","))),
        bool(row.enabled),
        row.created_at,
    )


_ENDPOINT_COLUMNS = (
    t.webhook_endpoints.c.id,
    t.webhook_endpoints.c.name,
    t.webhook_endpoints.c.url,
    t.webhook_endpoints.c.events,
    t.webhook_endpoints.c.enabled,
    t.webhook_endpoints.c.created_at,
)


def _default_name(url: str) -> str:
    host = urlsplit(url).hostname or "endpoint"
    return re.sub(r"[^A-Za-z0-9_-]+", "-", host).strip("-")[:40] or "endpoint"


def add_endpoint(
    conn: Connection,
    company_id: int,
    url: str,
    at: datetime,
    *,
    name: str | None = None,
    events: str | Iterable[str] | None = None,
) -> tuple[Endpoint, str]:
    """Add an endpoint (named after its host unless ``name`` is given) for ``events``
    (every type when None); returns it and its signing secret, which is not shown again."""
    url = check_url(url)
    name = check_name(name if name is not None else _default_name(url))
    types = parse_events(events)
    e = t.webhook_endpoints.c
    taken = conn.execute(
        select(e.id).where(e.company_id == company_id, e.name == name)
    ).scalar_one_or_none()
    if taken is not None:
        raise WebhookError(f"an endpoint named {name!r} exists already; choose another --name")
    secret = new_secret()
    row = conn.execute(
        t.webhook_endpoints.insert()
        .values(
            company_id=company_id,
            name=name,
            url=url,
            events=",".join(types),
            secret=secret,
            enabled=True,
            created_at=at,
        )
        .returning(*_ENDPOINT_COLUMNS)
    ).one()
    return _endpoint(row), secret


def list_endpoints(conn: Connection, company_id: int) -> list[Endpoint]:
    e = t.webhook_endpoints.c
    return [
        _endpoint(row)
        for row in conn.execute(
            select(*_ENDPOINT_COLUMNS).where(e.company_id == company_id).order_by(e.name)
        )
    ]


def find_endpoint(conn: Connection, company_id: int, name: str) -> Endpoint:
    """The company's endpoint called ``name`` (another company's is not found)."""
    e = t.webhook_endpoints.c
    row = conn.execute(
        select(*_ENDPOINT_COLUMNS).where(e.company_id == company_id, e.name == name)
    ).first()
    if row is None:
        known = [x.name for x in list_endpoints(conn, company_id)]
        hint = f"; the endpoints are {', '.join(known)}" if known else "; there are none"
        raise WebhookError(f"no webhook endpoint named {name!r}{hint}")
    return _endpoint(row)


def remove_endpoint(conn: Connection, company_id: int, name: str, at: datetime) -> int:
    """Remove the endpoint ``name``; its deliveries still waiting are cancelled (those
    done stay listed). Returns how many were cancelled."""
    endpoint = find_endpoint(conn, company_id, name)
    o = t.outbox.c
    cancelled = conn.execute(
        update(t.outbox)
        .where(
            o.company_id == company_id,
            o.step.like(f"{WEBHOOK_PREFIX}{endpoint.id}/%"),
            o.status == OutboxStatus.PLANNED.value,
        )
        .values(status=OutboxStatus.CANCELLED.value, reason="endpoint removed", finished_at=at)
    ).rowcount
    e = t.webhook_endpoints.c
    conn.execute(delete(t.webhook_endpoints).where(e.company_id == company_id, e.id == endpoint.id))
    return int(cancelled or 0)


def set_enabled(conn: Connection, company_id: int, name: str, enabled: bool) -> Endpoint:
    """Enable or disable an endpoint: a disabled one gets no new deliveries, and those
    waiting are cancelled when their turn comes."""
    endpoint = find_endpoint(conn, company_id, name)
    e = t.webhook_endpoints.c
    conn.execute(
        update(t.webhook_endpoints)
        .where(e.company_id == company_id, e.id == endpoint.id)
        .values(enabled=enabled)
    )
    return find_endpoint(conn, company_id, name)


def _enabled_endpoints(conn: Connection, company_id: int) -> list[Endpoint]:
    e = t.webhook_endpoints.c
    return [
        _endpoint(row)
        for row in conn.execute(
            select(*_ENDPOINT_COLUMNS)
            .where(e.company_id == company_id, e.enabled.is_(True))
            .order_by(e.id)
        )
    ]


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """Something that happened to one debtor, as endpoints receive it.

    ``ref`` names this occurrence among the events of its type for the debtor (a claim's
    outbox id, a dispute's id...): the same event emitted again makes no second delivery.
    ``data`` is what the type carries besides the company and the debtor.
    """

    type: str
    ref: str
    customer_id: int
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


def instant_ref(at: datetime) -> str:
    """An instant as a REF (microseconds since 1970): for events that are a change of state
    at a moment, such as an account blocked."""
    return str((at - _EPOCH) // timedelta(microseconds=1))


def money(minor: int, currency: str) -> dict[str, str]:
    """An amount as webhooks carry it: a decimal string and its currency, never a float."""
    value = Money.from_minor(minor, currency)
    return {"amount": str(value.amount), "currency": value.currency}


def timestamp(at: datetime) -> str:
    """``at`` in RFC 3339, in UTC with its offset."""
    return at.astimezone(UTC).isoformat()


def subscribed(conn: Connection, company_id: int) -> frozenset[str]:
    """The event types some enabled endpoint of the company receives (all of them when one
    subscribes to every type): callers skip building events nobody wants."""
    wanted: set[str] = set()
    for endpoint in _enabled_endpoints(conn, company_id):
        wanted.update(EVENT_TYPES if EVERY in endpoint.events else endpoint.events)
    return frozenset(wanted)


def emit(conn: Connection, company_id: int, events: Sequence[Event]) -> int:
    """Enqueue ``events`` for every enabled endpoint subscribed to their type, in the
    caller's transaction; returns how many deliveries were offered (an event already
    enqueued for an endpoint is skipped)."""
    if not events:
        return 0
    endpoints = _enabled_endpoints(conn, company_id)
    pairs = [(ep, ev) for ev in events for ep in endpoints if ep.wants(ev.type)]
    return _enqueue(conn, company_id, pairs)


def request_ticket(
    conn: Connection, company_id: int, endpoint_name: str, events: Sequence[Event]
) -> str | None:
    """Enqueue ``events`` (of type ``ticket.requested``) for the endpoint named
    ``endpoint_name``, whatever it subscribes to. Returns why they could not be (no such
    endpoint, or it is disabled), else None."""
    if not events:
        return None
    e = t.webhook_endpoints.c
    row = conn.execute(
        select(*_ENDPOINT_COLUMNS).where(e.company_id == company_id, e.name == endpoint_name)
    ).first()
    if row is None:
        return (
            f"no webhook endpoint named {endpoint_name!r} (add it with `cobro webhooks add URL "
            f"--name {endpoint_name}`); no ticket was requested"
        )
    endpoint = _endpoint(row)
    if not endpoint.enabled:
        return f"the webhook endpoint {endpoint_name!r} is disabled; no ticket was requested"
    _enqueue(conn, company_id, [(endpoint, ev) for ev in events])
    return None


def _enqueue(conn: Connection, company_id: int, pairs: list[tuple[Endpoint, Event]]) -> int:
    if not pairs:
        return 0
    c = t.customers.c
    slug = conn.execute(
        select(t.companies.c.slug).where(t.companies.c.id == company_id)
    ).scalar_one()
    ids = sorted({ev.customer_id for _, ev in pairs})
    debtors: dict[int, dict[str, str]] = {}
    for at in range(0, len(ids), 5000):
        for row in conn.execute(
            # By id (``+ 0``: SQLite would read an index of all the company's debtors).
            select(c.id, c.external_id, c.name).where(
                c.company_id + 0 == company_id, c.id.in_(ids[at : at + 5000])
            )
        ):
            debtors[int(row.id)] = {"id": str(row.external_id), "name": str(row.name)}
    rows = []
    for endpoint, ev in pairs:
        debtor = debtors.get(ev.customer_id)
        if debtor is None:  # not a debtor of this company: never posted
            continue
        step = f"{WEBHOOK_PREFIX}{endpoint.id}/{ev.type}/{ev.ref}"
        if len(step) > 90:
            raise ValueError(f"webhook step too long: {step}")
        body = {
            "type": ev.type,
            "timestamp": timestamp(ev.at),
            "data": {"company": slug, "customer": debtor, **ev.data},
        }
        rows.append(
            {
                "company_id": company_id,
                "customer_id": ev.customer_id,
                "step": step,
                "occurrence_on": ev.at.astimezone(UTC).date(),
                "status": OutboxStatus.PLANNED.value,
                "due_at": ev.at,
                "next_attempt_at": ev.at,
                "payload": {
                    "endpoint": endpoint.name,
                    "webhook_id": "msg_" + secrets.token_urlsafe(18),
                    "body": body,
                },
                "created_at": ev.at,
            }
        )
    if rows:
        conn.execute(insert_ignoring(conn, t.outbox).on_conflict_do_nothing(), rows)
    return len(rows)


BOUNCE_KINDS = ("hard", "soft", "complaint")


def message_bounced(
    conn: Connection,
    company_id: int,
    delivery_id: int,
    reason: str,
    at: datetime,
    kind: str = "hard",
) -> int:
    """Emit ``message.bounced`` for a delivery its provider reported as bounced: ``kind``
    ``hard`` (the address does not work), ``soft`` (it may later) or ``complaint`` (marked
    as spam). The bounce handling calls it in the transaction that records the bounce; a
    delivery bounced again the same way is one event."""
    if kind not in BOUNCE_KINDS:
        raise ValueError(f"bounce kind {kind!r}: one of {', '.join(BOUNCE_KINDS)}")
    d, o = t.deliveries.c, t.outbox.c
    row = conn.execute(
        select(d.id, d.outbox_id, d.channel, d.recipient, d.message_id, o.customer_id, o.step)
        .join(t.outbox, o.id == d.outbox_id)
        .where(d.company_id == company_id, d.id == delivery_id)
    ).first()
    if row is None:
        raise WebhookError(f"no delivery {delivery_id}")
    return emit(
        conn,
        company_id,
        [
            Event(
                "message.bounced",
                f"{row.id}.{kind}",
                int(row.customer_id),
                at,
                {
                    "delivery": {
                        "id": int(row.id),
                        "claim": int(row.outbox_id),
                        "step": str(row.step),
                        "channel": str(row.channel),
                        "recipient": str(row.recipient),
                        "message_id": row.message_id,
                    },
                    "kind": kind,
                    "reason": reason[:1000],
                },
            )
        ],
    )


def task_events(conn: Connection, company_id: int, task_ids: Sequence[int]) -> list[Event]:
    """``task.created`` of each task in ``task_ids`` (of this company)."""
    k = t.tasks.c
    ids = sorted(set(task_ids))
    found: list[Event] = []
    for at in range(0, len(ids), 5000):
        for row in conn.execute(
            select(
                k.id, k.customer_id, k.action_key, k.created_on, k.due_at, k.message, k.created_at
            )
            .where(k.company_id + 0 == company_id, k.id.in_(ids[at : at + 5000]))  # by id
            .order_by(k.id)
        ):
            found.append(
                Event(
                    "task.created",
                    str(row.id),
                    int(row.customer_id),
                    row.created_at,
                    {"task": task_data(row)},
                )
            )
    return found


def task_data(row: Any) -> dict[str, Any]:
    """A task (a row of ``tasks``) as webhooks carry it."""
    return {
        "id": int(row.id),
        "action": str(row.action_key),
        "message": str(row.message),
        "created_on": row.created_on.isoformat(),
        "due_at": timestamp(row.due_at),
    }


# --------------------------------------------------------------------------- config


def registered_names(url: str, company_slug: str) -> list[str] | None:
    """The endpoint names a company registered, read without creating, migrating or
    changing the database; None when it cannot be read (unreachable, or older than the
    webhooks). A SQLite database not created yet has none."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from cobro.store.db import normalise_url

    try:
        url = normalise_url(url)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if not parsed.database or not Path(parsed.database).is_file():
                return []
            url = f"sqlite:///file:{Path(parsed.database).resolve()}?mode=ro&uri=true"
            engine = create_engine(url)
        else:
            engine = create_engine(url, connect_args={"connect_timeout": 5})
    except (CobroError, ValueError, SQLAlchemyError, ImportError):
        return None
    e, c = t.webhook_endpoints.c, t.companies.c
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    select(e.name)
                    .join(t.companies, c.id == e.company_id)
                    .where(c.slug == company_slug)
                    .order_by(e.name)
                ).scalars()
            )
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def ticket_endpoints(config: CobroConfig) -> dict[str, str]:
    """Step -> endpoint name of the phases and message/debt-notice actions that request a
    ticket when they are sent (``webhook:`` in cobro.yaml)."""
    found = {
        f"{policy}/{ph.key}": ph.webhook
        for policy, pc in config.policies.items()
        for ph in pc.phases
        if ph.webhook
    }
    found.update({f"action/{a.key}": a.webhook for a in config.actions if a.webhook})
    return found


def claim_kind(config: CobroConfig, step: str) -> str:
    """What an outbox row sends: ``phase``, ``action``, ``resend`` or the notice's kind
    (``receipt``, ``unpaid``, ``upcoming``, ``admin``, ``banking``)."""
    try:
        config.phase_by_step(step)
    except KeyError:
        return step.partition("/")[0]
    return "phase"


# --------------------------------------------------------------------------- deliveries


@dataclass(frozen=True)
class Attempt:
    """One post of a delivery: when, the HTTP status (None: no answer), the error (None:
    accepted) and how long it took."""

    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def accepted(self) -> bool:
        return self.error is None

    def to_json(self, tz: tzinfo = UTC) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "at": self.at.astimezone(tz).isoformat(),
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True)
class Delivery:
    """One event posted (or to be posted) to one endpoint: an outbox row."""

    id: int  # the outbox row's
    endpoint: str
    endpoint_id: int
    event: str
    ref: str
    webhook_id: str
    customer: str
    status: str
    reason: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None
    attempts: tuple[Attempt, ...] = ()

    def to_json(self, tz: tzinfo = UTC) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "event": self.event,
            "webhook_id": self.webhook_id,
            "customer": self.customer,
            "status": self.status,
            "reason": self.reason,
            "created_at": self.created_at.astimezone(tz).isoformat(),
            "next_attempt_at": (
                self.next_attempt_at.astimezone(tz).isoformat() if self.next_attempt_at else None
            ),
            "finished_at": (
                self.finished_at.astimezone(tz).isoformat() if self.finished_at else None
            ),
            "attempts": [a.to_json(tz) for a in self.attempts],
        }


def parse_step(step: str) -> tuple[int, str, str] | None:
    """(endpoint id, event type, ref) of a webhook step, or None for any other step."""
    if not step.startswith(WEBHOOK_PREFIX):
        return None
    endpoint, _, rest = step.removeprefix(WEBHOOK_PREFIX).partition("/")
    event, _, ref = rest.partition("/")
    if not endpoint.isdigit() or not event:
        return None
    return int(endpoint), event, ref


def list_deliveries(
    conn: Connection,
    company_id: int,
    *,
    endpoint: str | None = None,
    status: str | None = None,
    event: str | None = None,
    customer: str | None = None,
    before: int | None = None,
    delivery: int | None = None,
    limit: int = 50,
) -> list[Delivery]:
    """The company's webhook deliveries, newest first, each with its attempts; filtered by
    endpoint name, status, event type and debtor (external id). ``before`` (a delivery id)
    pages on: the deliveries older than it; ``delivery`` (an id) selects that one."""
    if status is not None and status not in STATUSES:
        raise WebhookError(f"unknown status {status!r}; the statuses are {', '.join(STATUSES)}")
    if event is not None and event not in (*EVENT_TYPES, TICKET):
        raise WebhookError(
            f"unknown event type {event!r}; the event types are {', '.join((*EVENT_TYPES, TICKET))}"
        )
    o, c = t.outbox.c, t.customers.c
    q = (
        select(
            o.id,
            o.step,
            o.status,
            o.reason,
            o.payload,
            o.created_at,
            o.next_attempt_at,
            o.finished_at,
            c.external_id,
        )
        .join(t.customers, c.id == o.customer_id)
        .where(o.company_id == company_id, o.step.like(IS_WEBHOOK))
        .order_by(o.id.desc())
        .limit(max(1, min(limit, 1000)))
    )
    if endpoint is not None:
        found = find_endpoint(conn, company_id, endpoint)
        q = q.where(o.step.like(f"{WEBHOOK_PREFIX}{found.id}/%"))
        if event is not None:
            q = q.where(o.step.like(f"{WEBHOOK_PREFIX}{found.id}/{event}/%"))
    elif event is not None:
        q = q.where(o.step.like(f"{WEBHOOK_PREFIX}%/{event}/%"))
    if status is not None:
        q = q.where(o.status == status)
    if customer is not None:
        q = q.where(c.external_id == customer)
    if before is not None:
        q = q.where(o.id < before)
    if delivery is not None:
        q = q.where(o.id == delivery)
    rows = conn.execute(q).all()
    attempts: dict[int, list[Attempt]] = {}
    a = t.webhook_attempts.c
    ids = [int(r.id) for r in rows]
    if ids:
        for row in conn.execute(
            select(a.outbox_id, a.attempt, a.at, a.status_code, a.error, a.duration_ms)
            .where(a.company_id == company_id, a.outbox_id.in_(ids))
            .order_by(a.outbox_id, a.id)
        ):
            attempts.setdefault(int(row.outbox_id), []).append(
                Attempt(
                    int(row.attempt),
                    row.at,
                    row.status_code,
                    row.error,
                    int(row.duration_ms),
                )
            )
    out = []
    for r in rows:
        parsed = parse_step(str(r.step))
        if parsed is None:
            continue
        endpoint_id, event_type, ref = parsed
        payload = r.payload or {}
        out.append(
            Delivery(
                id=int(r.id),
                endpoint=str(payload.get("endpoint", endpoint_id)),
                endpoint_id=endpoint_id,
                event=event_type,
                ref=ref,
                webhook_id=str(payload.get("webhook_id", "")),
                customer=str(r.external_id),
                status=str(r.status),
                reason=r.reason,
                created_at=r.created_at,
                next_attempt_at=r.next_attempt_at if r.status == "planned" else None,
                finished_at=r.finished_at,
                attempts=tuple(attempts.get(int(r.id), ())),
            )
        )
    return out


def redeliver(conn: Connection, company_id: int, delivery_id: int, at: datetime) -> None:
    """Post a failed or cancelled delivery again from ``at``, with a fresh retry budget and
    the same ``webhook-id`` (the receiver can tell it is the same event)."""
    o = t.outbox.c
    row = conn.execute(
        select(o.step, o.status).where(
            o.company_id == company_id, o.id == delivery_id, o.step.like(IS_WEBHOOK)
        )
    ).first()
    if row is None:
        raise WebhookError(f"no webhook delivery {delivery_id}")
    if row.status not in (OutboxStatus.FAILED.value, OutboxStatus.CANCELLED.value):
        raise WebhookError(
            f"delivery {delivery_id} is {row.status}; only failed or cancelled ones are posted "
            "again"
        )
    parsed = parse_step(str(row.step))
    e = t.webhook_endpoints.c
    if parsed is None or (
        conn.execute(
            select(func.count()).where(e.company_id == company_id, e.id == parsed[0])
        ).scalar_one()
        == 0
    ):
        raise WebhookError(f"delivery {delivery_id}: its endpoint was removed")
    conn.execute(
        update(t.outbox)
        .where(o.id == delivery_id, o.company_id == company_id)
        .values(
            status=OutboxStatus.PLANNED.value,
            next_attempt_at=at,
            reason=None,
            finished_at=None,
            failing_since=None,
        )
    )
