"""What a debtor's portal page shows: the claim that brought them, their open items, their
earlier claims; every query scoped to the company and to the one debtor of the link."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Select, and_, bindparam, case, func, select, true

from cobro.config import CobroConfig
from cobro.config.schema import RESERVED_STEP_PREFIXES
from cobro.domain.model import Recipient
from cobro.domain.money import Money, totals_by_currency
from cobro.engine.links import PortalLink
from cobro.engine.messages import message_spec
from cobro.engine.responses import Client
from cobro.evidence.messages import unpack
from cobro.store import tables as t

MAX_EARLIER = 50  # earlier claims listed on the page, newest first


@dataclass(frozen=True)
class Debtor:
    """The debtor a valid link names, and the claim it came with."""

    id: int
    external_id: str
    name: str
    language: str | None
    outbox_id: int
    step: str  # the claim's outbox step (``b2b/01``) and planned date
    occurrence_on: date


@dataclass(frozen=True)
class ClaimText:
    """The claim as the debtor received it: phase, date and the message's text."""

    step: str
    phase_name: str
    sent_on: date  # company time: the day its first message went out (else its planned day)
    channel: str | None
    subject: str | None
    text: str | None
    phase_names: tuple[tuple[str, str], ...] = ()  # (language, name) where configured

    def phase_in(self, language: str) -> str:
        """The phase's name for a page in ``language``."""
        return next((n for lang, n in self.phase_names if lang == language), self.phase_name)


@dataclass(frozen=True)
class OpenItem:
    id: int
    number: str
    kind: str
    issued_on: date | None
    due_on: date
    amount: Money
    balance: Money
    days_overdue: int  # 0 when not overdue
    status: str  # overdue | due_today | not_due | disputed | promised
    promised_on: date | None


@dataclass(frozen=True)
class EarlierClaim:
    sent_on: date
    phase_name: str
    phase_names: tuple[tuple[str, str], ...] = ()  # (language, name) where configured

    def phase_in(self, language: str) -> str:
        """The phase's name for a page in ``language``."""
        return next((n for lang, n in self.phase_names if lang == language), self.phase_name)


@dataclass(frozen=True)
class DebtorPage:
    debtor: Debtor
    claim: ClaimText
    items: list[OpenItem]
    totals: list[Money]
    payable: list[Money]  # per currency, the balance of the items not in dispute
    earlier: list[EarlierClaim]
    read_at: datetime | None  # the last confirmed reading of this claim

    def disputable(self) -> list[OpenItem]:
        return [i for i in self.items if i.status != "disputed"]

    def promisable(self) -> list[OpenItem]:
        return [i for i in self.items if i.status not in ("disputed", "promised")]


# Statements are built once, on first use, with their values as bound parameters: the
# page runs them on every request.


@cache
def _debtor_query() -> Select[Any]:
    o, c = t.outbox.c, t.customers.c
    return (
        select(c.id, c.external_id, c.name, c.language, o.step, o.occurrence_on)
        .join(t.outbox, o.customer_id == c.id)
        .where(
            o.id == bindparam("outbox"),
            o.company_id == bindparam("company"),
            c.company_id == bindparam("company"),
            c.external_id == bindparam("customer"),
        )
    )


def find_debtor(conn: Connection, company_id: int, link: PortalLink) -> Debtor | None:
    """The debtor and claim ``link`` names, or None when this company has no such claim
    of that debtor (a link shows one debtor's data only)."""
    row = conn.execute(
        _debtor_query(),
        {"outbox": link.outbox_id, "company": company_id, "customer": link.customer},
    ).first()
    if row is None:
        return None
    return Debtor(
        int(row.id),
        str(row.external_id),
        str(row.name),
        row.language,
        link.outbox_id,
        str(row.step),
        row.occurrence_on,
    )


def is_claim(config: CobroConfig, step: str) -> bool:
    """Whether an outbox step is a claim about open items (a policy phase, a debt notice),
    not a receipt or a subscription notice."""
    try:
        return message_spec(config, step).needs_items
    except KeyError:  # a phase no longer configured
        return step.split("/", 1)[0] not in RESERVED_STEP_PREFIXES


@lru_cache(maxsize=512)
def _message_text(channel: str, compressed: bytes) -> tuple[str | None, str | None]:
    """(subject, text) of a kept message: an email's text/plain part, an SMS's text, a push
    notification's title and body. Kept messages never change: parsed once per process."""
    data = unpack(compressed)
    if channel == "email":
        msg = BytesParser(policy=default_policy).parsebytes(data)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(("plain",))
        text = str(body.get_content()) if body is not None else None
        return (str(msg["subject"]) if msg["subject"] else None), text
    if channel == "push":
        try:
            payload = json.loads(data)
        except ValueError:
            return None, None
        return payload.get("title"), payload.get("body")
    return None, data.decode("utf-8", errors="replace")


@cache
def _delivery_query() -> Select[Any]:
    d = t.deliveries.c
    return (
        select(d.channel, d.at, d.message_zlib)
        .where(
            d.outbox_id == bindparam("outbox"),
            d.company_id == bindparam("company"),
            d.recipient_role == Recipient.DEBTOR.value,
            d.status == "sent",
        )
        .order_by(d.id)
        .limit(1)
    )


def _names(config: CobroConfig, step: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A step's name and its names in other languages (a page is cached once for every
    language it is shown in)."""
    try:
        spec = message_spec(config, step)
    except KeyError:
        return step, ()
    return spec.name, spec.names


def claim_text(conn: Connection, config: CobroConfig, company_id: int, debtor: Debtor) -> ClaimText:
    """The claim of the link: its phase, the day it went out and the text the debtor was
    sent (the kept message of its first delivery to the debtor, never a staff copy)."""
    kept = conn.execute(
        _delivery_query(), {"outbox": debtor.outbox_id, "company": company_id}
    ).first()
    subject = text = channel = None
    sent_on = debtor.occurrence_on
    if kept is not None:
        channel = str(kept.channel)
        sent_on = kept.at.astimezone(ZoneInfo(config.company.timezone)).date()
        if kept.message_zlib is not None:
            subject, text = _message_text(channel, bytes(kept.message_zlib))
    name, names = _names(config, debtor.step)
    return ClaimText(debtor.step, name, sent_on, channel, subject, text, names)


@cache
def _item_queries() -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The debtor's open disputes, open promises and open items."""
    r, ds, p, pi = t.receivables.c, t.disputes.c, t.promises.c, t.promise_items.c
    disputed = select(ds.receivable_id).where(
        ds.company_id == bindparam("company"),
        ds.customer_id == bindparam("customer"),
        ds.status == "open",
    )
    promised = (
        select(pi.receivable_id, p.promised_on)
        .join(t.promises, p.id == pi.promise_id)
        .where(
            p.company_id == bindparam("company"),
            p.customer_id == bindparam("customer"),
            p.status == "open",
        )
    )
    items = (
        select(
            r.id,
            r.number,
            r.kind,
            r.issued_on,
            r.due_on,
            r.currency,
            r.amount_minor,
            r.balance_minor,
        )
        .where(
            r.company_id == bindparam("company"),
            r.customer_id == bindparam("customer"),
            r.balance_minor > 0,
        )
        .order_by(r.due_on, r.number, r.id)
    )
    return disputed, promised, items


def open_items(conn: Connection, company_id: int, customer_id: int, today: date) -> list[OpenItem]:
    """Every open item of the debtor (oldest due first), with its dispute or promise."""
    disputed_q, promised_q, items_q = _item_queries()
    params = {"company": company_id, "customer": customer_id}
    disputed = set(conn.execute(disputed_q, params).scalars())
    promised: dict[int, date] = {}
    for rid, on in conn.execute(promised_q, params):
        promised[int(rid)] = max(on, promised.get(int(rid), on))
    items: list[OpenItem] = []
    for row in conn.execute(items_q, params):
        rid = int(row.id)
        late = (today - row.due_on).days
        if rid in disputed:
            status = "disputed"
        elif rid in promised:
            status = "promised"
        else:
            status = "overdue" if late > 0 else "due_today" if late == 0 else "not_due"
        items.append(
            OpenItem(
                rid,
                str(row.number),
                str(row.kind),
                row.issued_on,
                row.due_on,
                Money.from_minor(row.amount_minor, row.currency),
                Money.from_minor(row.balance_minor, row.currency),
                max(late, 0),
                status,
                promised.get(rid),
            )
        )
    return items


@cache
def _earlier_query() -> Select[Any]:
    """The debtor's other claims with the instant each first went out, newest first."""
    o, d = t.outbox.c, t.deliveries.c
    sent_at = func.min(d.at).label("sent_at")
    return (
        select(o.step, sent_at)
        .join(t.deliveries, d.outbox_id == o.id)
        .where(
            o.company_id == bindparam("company"),
            o.customer_id == bindparam("customer"),
            o.id != bindparam("outbox"),
            d.status == "sent",
        )
        .group_by(o.id, o.step)
        .order_by(sent_at.desc(), o.id.desc())
    )


def earlier_claims(
    conn: Connection, config: CobroConfig, company_id: int, debtor: Debtor, before: date
) -> list[EarlierClaim]:
    """The debtor's other claims that went out before ``before`` (company time), newest
    first."""
    tz = ZoneInfo(config.company.timezone)
    found: list[EarlierClaim] = []
    params = {"company": company_id, "customer": debtor.id, "outbox": debtor.outbox_id}
    for row in conn.execute(_earlier_query(), params):
        sent_on = row.sent_at.astimezone(tz).date()
        if sent_on > before or not is_claim(config, row.step):
            continue
        found.append(EarlierClaim(sent_on, *_names(config, row.step)))
        if len(found) == MAX_EARLIER:
            break
    return found


@dataclass(frozen=True)
class SentClaim:
    id: int
    step: str
    occurrence_on: date


def latest_claim(
    conn: Connection, config: CobroConfig, company_id: int, customer: str
) -> SentClaim | None:
    """The debtor's (external id ``customer``) latest claim that was sent, or None."""
    o, c = t.outbox.c, t.customers.c
    for row in conn.execute(
        select(o.id, o.step, o.occurrence_on)
        .join(t.customers, c.id == o.customer_id)
        .where(
            o.company_id == company_id,
            c.company_id == company_id,
            c.external_id == customer,
            o.status == "sent",
        )
        .order_by(o.occurrence_on.desc(), o.id.desc())
    ):
        if is_claim(config, row.step):
            return SentClaim(int(row.id), str(row.step), row.occurrence_on)
    return None


def opened_since(
    conn: Connection, debtor: Debtor, client: Client, since: datetime
) -> datetime | None:
    """When this claim's page was last recorded as opened by the same address and browser,
    if that was at ``since`` or later; else None."""
    v = t.claim_views.c
    at: datetime | None = conn.execute(
        select(func.max(v.at)).where(
            v.outbox_id == debtor.outbox_id,
            v.kind == "opened",
            v.at >= since,
            v.ip.is_(None) if client.ip is None else v.ip == client.ip,
            v.user_agent.is_(None)
            if client.user_agent is None
            else v.user_agent == client.user_agent[:500],
        )
    ).scalar()
    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))


@cache
def _version_query() -> Select[Any]:
    """Counts, sums and latest ids of everything a debtor's page shows: any change to
    what it shows changes one of them (a receivable's balance, status or due date, a
    payment, a claim sent, a confirmed read, a dispute opened or resolved, a promise made
    or settled, the debtor's name or language), and whether the link's claim is still
    this debtor's (a debtor looked up earlier is then still the link's)."""
    c, r, o = t.customers.c, t.receivables.c, t.outbox.c
    v, d, p = t.claim_views.c, t.disputes.c, t.promises.c
    customer: Any = bindparam("customer")
    company: Any = bindparam("company")

    def where(*conditions: Any) -> Any:
        return case((and_(*conditions), 1))

    # One pass over each table's rows of the debtor (its own index), each giving several
    # aggregates: a one-row derived table per table, joined.
    parts = [
        select(func.max(c.updated_at)).where(c.id == customer, c.company_id == company),
        select(
            func.count(),
            func.max(r.updated_at),
            func.sum(r.balance_minor),
            func.sum(r.amount_minor),
        ).where(r.company_id == company, r.customer_id == customer),
        select(
            func.max(o.id),
            func.count(where(o.status == "sent")),
            func.count(where(o.id == bindparam("outbox"))),
        ).where(o.company_id == company, o.customer_id == customer),
        select(func.max(v.id)).where(v.customer_id == customer),
        select(func.max(d.id), func.count(d.resolved_at)).where(
            d.company_id == company, d.customer_id == customer
        ),
        select(func.max(p.id), func.count(where(p.status != "open"))).where(
            p.company_id == company, p.customer_id == customer
        ),
    ]
    derived = [part.subquery(f"v{i}") for i, part in enumerate(parts)]
    joined: Any = derived[0]
    for each in derived[1:]:
        joined = joined.join(each, true())
    return select(*[col for each in derived for col in each.c]).select_from(joined)


def page_version(conn: Connection, company_id: int, debtor: Debtor) -> tuple[Any, ...]:
    """What changes whenever anything the page of ``debtor``'s link shows changes
    (``PageCache``)."""
    row = conn.execute(
        _version_query(),
        {"company": company_id, "customer": debtor.id, "outbox": debtor.outbox_id},
    ).one()
    return tuple(row)


def last_read(conn: Connection, debtor: Debtor) -> datetime | None:
    v = t.claim_views.c
    at: datetime | None = conn.execute(
        select(func.max(v.at)).where(
            v.outbox_id == debtor.outbox_id, v.customer_id == debtor.id, v.kind == "read"
        )
    ).scalar()
    return at


def debtor_page(
    conn: Connection, config: CobroConfig, company_id: int, debtor: Debtor, today: date
) -> DebtorPage:
    """Everything the page of ``debtor``'s link shows, as of the company-local ``today``."""
    claim = claim_text(conn, config, company_id, debtor)
    items = open_items(conn, company_id, debtor.id, today)
    return DebtorPage(
        debtor,
        claim,
        items,
        list(totals_by_currency([i.balance for i in items]).values()),
        list(totals_by_currency([i.balance for i in items if i.status != "disputed"]).values()),
        earlier_claims(conn, config, company_id, debtor, claim.sent_on),
        last_read(conn, debtor),
    )
