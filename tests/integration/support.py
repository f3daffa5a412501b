"""Helpers for the integration tests: put data in, read rows and mail out."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, time
from decimal import Decimal
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any
from zoneinfo import ZoneInfo

from babel.numbers import format_currency
from sqlalchemy import Row, event, func, select

from cobro.intake.importer import ImportReport, import_records
from cobro.store import tables as t
from cobro.workspace import Workspace

# When the test data is imported (any instant before the runs works).
LOADED = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def load(
    ws: Workspace, kind: str, *rows: dict[str, str | None], now: datetime = LOADED
) -> ImportReport:
    """Import ``rows`` of ``kind``; every row must be accepted."""
    report = import_records(ws, kind, list(enumerate(rows, 1)), now, "test")
    assert not report.rejected, [str(p) for p in report.rejected]
    return report


def business(ws: Workspace, external_id: str, email: str, name: str | None = None) -> None:
    """A B2B debtor (policy ``b2b`` under the starter assignment rules)."""
    load(
        ws,
        "customers",
        {
            "external_id": external_id,
            "name": name or external_id,
            "kind": "business",
            "email": email,
        },
    )


def person(ws: Workspace, external_id: str, email: str, name: str | None = None) -> None:
    """A consumer (policy ``consumer``)."""
    load(
        ws,
        "customers",
        {"external_id": external_id, "name": name or external_id, "kind": "person", "email": email},
    )


def invoice(
    ws: Workspace,
    external_id: str,
    customer: str,
    due_on: date,
    amount: str,
    currency: str | None = None,
) -> None:
    row: dict[str, str | None] = {
        "external_id": external_id,
        "customer": customer,
        "due_on": due_on.isoformat(),
        "amount": amount,
    }
    if currency:
        row["currency"] = currency
    load(ws, "receivables", row)


def pay(
    ws: Workspace,
    external_id: str,
    customer: str,
    amount: str,
    paid_on: date,
    *,
    receivable: str | None = None,
    now: datetime | None = None,
) -> None:
    row: dict[str, str | None] = {
        "external_id": external_id,
        "customer": customer,
        "amount": amount,
        "paid_on": paid_on.isoformat(),
    }
    if receivable:
        row["receivable"] = receivable
    load(ws, "payments", row, now=now or datetime.combine(paid_on, time(12), UTC))


def local(ws: Workspace, on: date, hhmm: str) -> datetime:
    """``hhmm`` on ``on`` in the company's time zone, as an aware UTC instant."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    tz = ZoneInfo(ws.config.company.timezone)
    return datetime.combine(on, time(hour, minute), tz).astimezone(UTC)


def money(amount: str, currency: str = "EUR", locale: str = "es_ES") -> str:
    """An amount as the messages show it (company locale es_ES)."""
    return str(format_currency(Decimal(amount), currency, locale=locale))


def outbox(ws: Workspace) -> list[Row[Any]]:
    """Every outbox row with its debtor's external id, oldest first."""
    o, c = t.outbox.c, t.customers.c
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(t.outbox, c.external_id.label("customer"))
                .join(t.customers, c.id == o.customer_id)
                .order_by(o.occurrence_on, o.id)
            )
        )


def sent(ws: Workspace) -> list[tuple[date, str, str]]:
    """(date, debtor, step) of every outbox row that was sent."""
    return [(r.occurrence_on, r.customer, r.step) for r in outbox(ws) if r.status == "sent"]


def claimed_numbers(ws: Workspace, outbox_id: int) -> list[str]:
    ci, r = t.claim_items.c, t.receivables.c
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(r.number)
                .join(t.claim_items, ci.receivable_id == r.id)
                .where(ci.outbox_id == outbox_id)
                .order_by(r.number)
            ).scalars()
        )


def count(ws: Workspace, table: Any) -> int:
    with ws.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def deliveries(ws: Workspace) -> list[Row[Any]]:
    with ws.engine.connect() as conn:
        return list(conn.execute(select(t.deliveries).order_by(t.deliveries.c.id)))


def parse(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=default_policy).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


def captured(ws: Workspace) -> list[EmailMessage]:
    """Every message caught in the workspace's ``mail/`` directory."""
    if not ws.mail_dir.exists():
        return []
    return [parse(p.read_bytes()) for p in sorted(ws.mail_dir.rglob("*.eml"))]


def plain(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None, "no text/plain part"
    return str(body.get_content())


def html(msg: EmailMessage) -> str:
    body = msg.get_body(("html",))
    assert body is not None, "no text/html part"
    return str(body.get_content())


def d(text: str) -> date:
    return date.fromisoformat(text)


@contextmanager
def rendezvous(
    targets: list[Any],
    parties: int,
    matches: Callable[[str], bool],
    *,
    after: bool = False,
    timeout: float = 5.0,
) -> Iterator[None]:
    """Hold each of ``parties`` threads at its first SQL statement that ``matches`` (before
    or after it runs) until all of them are there, so that a race happens every time.

    ``targets`` are engines (or the ``Engine`` class). A thread that is blocked elsewhere
    never arrives: the others go on after ``timeout`` seconds.
    """
    barrier = threading.Barrier(parties, timeout=timeout)
    arrived: set[int] = set()
    guard = threading.Lock()

    def hook(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if not matches(statement):
            return
        me = threading.get_ident()
        with guard:
            if me in arrived:
                return
            arrived.add(me)
        with suppress(threading.BrokenBarrierError):
            barrier.wait()

    name = "after_cursor_execute" if after else "before_cursor_execute"
    for target in targets:
        event.listen(target, name, hook)
    try:
        yield
    finally:
        for target in targets:
            event.remove(target, name, hook)
