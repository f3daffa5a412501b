"""The overview's figures, read with a few aggregate queries: aging of open items, DSO and
CEI over the last 30 and 90 days, messages and what followed them, amounts recovered by
phase and by channel, staff tasks due today. Formulas: docs/reports.md and
``cobro.domain.reports``; everything is in the company's currency (other currencies are
shown apart, in the aging only)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, case, func, select

from cobro.domain.model import Recipient
from cobro.domain.money import Money
from cobro.domain.reports import BUCKETS, cei, dso
from cobro.store import tables as t

PERIODS = (30, 90)  # days, ending today
DELIVERED = ("sent", "delivered")  # delivery states that reached the channel
TASKS_SHOWN = 10


@dataclass(frozen=True)
class Period:
    """One period's figures: the DSO and CEI terms, the messages, the amounts recovered."""

    days: int
    sales: Money
    beginning: Money
    dso: Decimal | None
    cei: Decimal | None
    sent: int
    delivered: int
    failed: int
    opened: int
    read: int
    recovered: Money
    by_phase: list[tuple[str | None, Money]]  # (outbox step, or None: paid with no claim)
    by_channel: list[tuple[str | None, Money, Money]]  # (channel, recovered, cost)


@dataclass(frozen=True)
class DueTask:
    id: int
    customer: str
    customer_name: str
    due_at: datetime
    message: str


@dataclass(frozen=True)
class Overview:
    today: date
    currency: str
    aging: dict[str, Money]  # bucket -> open balance (company currency)
    other_currencies: dict[str, dict[str, Money]]  # currency -> bucket -> balance
    outstanding: Money  # every open balance (the sum of the aging buckets)
    current: Money  # of which not overdue yet
    periods: list[Period]
    tasks_today: list[DueTask]
    tasks_today_count: int
    tasks_overdue_count: int
    debtors_overdue: int = 0
    notes: list[str] = field(default_factory=list)


def _issue_day(r: Any) -> Any:
    """A receivable's issue day: its issue date, else its due date (indexed)."""
    return func.coalesce(r.issued_on, r.due_on)


def _start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def _sum_when(condition: Any, value: Any) -> Any:
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0)


def _open_balances(
    conn: Connection, company_id: int, currency: str, today: date
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Per currency, the open balance per aging bucket; and, in the company currency, the
    terms that need the open items: ending total and current, and for each period the
    balance now of the items issued before it began."""
    r = t.receivables.c
    late = [
        ("current", r.due_on >= today),
        ("1-30", and_(r.due_on < today, r.due_on >= today - timedelta(days=30))),
        (
            "31-60",
            and_(r.due_on < today - timedelta(days=30), r.due_on >= today - timedelta(days=60)),
        ),
        (
            "61-90",
            and_(r.due_on < today - timedelta(days=60), r.due_on >= today - timedelta(days=90)),
        ),
        ("90+", r.due_on < today - timedelta(days=90)),
    ]
    issued = _issue_day(r) <= today
    columns = [_sum_when(cond, r.balance_minor).label(f"b{i}") for i, (_, cond) in enumerate(late)]
    columns += [
        _sum_when(issued, r.balance_minor).label("ending"),
        _sum_when(and_(issued, r.due_on >= today), r.balance_minor).label("ending_current"),
        *(
            _sum_when(_issue_day(r) <= today - timedelta(days=n), r.balance_minor).label(
                f"before{n}"
            )
            for n in PERIODS
        ),
    ]
    by_currency: dict[str, dict[str, int]] = {}
    terms: dict[str, int] = defaultdict(int)
    for row in conn.execute(
        select(r.currency, *columns)
        .where(r.company_id == company_id, r.balance_minor > 0)
        .group_by(r.currency)
    ):
        by_currency[row.currency] = {
            name: int(getattr(row, f"b{i}")) for i, (name, _) in enumerate(late)
        }
        if row.currency == currency:
            terms["ending"] = int(row.ending)
            terms["ending_current"] = int(row.ending_current)
            for n in PERIODS:
                terms[f"before{n}"] = int(getattr(row, f"before{n}"))
    return by_currency, terms


def _sales(conn: Connection, company_id: int, currency: str, today: date) -> dict[int, int]:
    """Per period, the amount of the receivables issued in it (credit notes subtract)."""
    r = t.receivables.c
    day = _issue_day(r)
    longest = today - timedelta(days=max(PERIODS))
    row = conn.execute(
        select(
            *(
                _sum_when(day > today - timedelta(days=n), r.amount_minor).label(f"s{n}")
                for n in PERIODS
            )
        ).where(r.company_id == company_id, day > longest, day <= today, r.currency == currency)
    ).one()
    return {n: int(getattr(row, f"s{n}")) for n in PERIODS}


def _collected_since(
    conn: Connection, company_id: int, currency: str, today: date
) -> dict[int, int]:
    """Per period, what payments (net of reversals) dated after its first day took off the
    items issued before it: with their balance now, what those items owed when it began."""
    a, p, r = t.allocations.c, t.payments.c, t.receivables.c
    out: dict[int, int] = {}
    for n in PERIODS:
        begin = today - timedelta(days=n)
        paid = conn.execute(
            select(func.coalesce(func.sum(a.amount_minor), 0))
            .select_from(t.allocations)
            .join(t.payments, p.id == a.payment_id)
            .join(t.receivables, r.id == a.receivable_id)
            .where(
                p.company_id == company_id,
                p.paid_on > begin,
                r.currency == currency,
                _issue_day(r) <= begin,
            )
        ).scalar_one()
        credit, note = t.credit_applications.c, t.receivables.alias("credit_note")
        credited = conn.execute(
            select(func.coalesce(func.sum(credit.amount_minor), 0))
            .select_from(t.credit_applications)
            .join(note, note.c.id == credit.credit_note_id)
            .join(t.receivables, r.id == credit.receivable_id)
            .where(
                note.c.company_id == company_id,
                _issue_day(note.c) > begin,
                r.currency == currency,
                _issue_day(r) <= begin,
            )
        ).scalar_one()
        out[n] = int(paid) + int(credited)
    return out


def _messages(
    conn: Connection, company_id: int, start: datetime, end: datetime
) -> tuple[int, int, int, int, int]:
    """Messages to debtors in [start, end): sent, delivered, failed; claims opened, read."""
    d, v = t.deliveries.c, t.claim_views.c
    row = conn.execute(
        select(
            func.count(),
            _sum_when(d.status.in_(DELIVERED), 1),
        ).where(
            d.company_id == company_id,
            d.at >= start,
            d.at < end,
            d.recipient_role == Recipient.DEBTOR.value,
        )
    ).one()
    views: dict[str, int] = {
        str(row[0]): int(row[1])
        for row in conn.execute(
            select(v.kind, func.count(func.distinct(v.outbox_id)))
            .where(v.company_id == company_id, v.at >= start, v.at < end)
            .group_by(v.kind)
        )
    }
    sent, delivered = int(row[0]), int(row[1])
    return sent, delivered, sent - delivered, int(views.get("opened", 0)), int(views.get("read", 0))


def _recovered(
    conn: Connection, company_id: int, currency: str, first: date, today: date
) -> list[tuple[str | None, str | None, int]]:
    """Payments (net of reversals) dated from ``first`` to ``today`` in the company
    currency, by the phase (outbox step) and channel of the claim they followed: the
    latest claim sent that listed the item on or before the payment's day; (None, None)
    when no claim did."""
    a, p, ci, o, d = t.allocations.c, t.payments.c, t.claim_items.c, t.outbox.c, t.deliveries.c
    r = t.receivables.c
    claim = (
        select(o.id)
        .select_from(t.claim_items)
        .join(t.outbox, o.id == ci.outbox_id)
        .where(
            ci.receivable_id == a.receivable_id, o.status == "sent", o.occurrence_on <= p.paid_on
        )
        .order_by(o.occurrence_on.desc(), o.id.desc())
        .limit(1)
        .correlate(t.allocations, t.payments)
        .scalar_subquery()
    )
    paid = (
        select(a.amount_minor.label("amount"), claim.label("claim"))
        .select_from(t.allocations)
        .join(t.payments, p.id == a.payment_id)
        .join(t.receivables, r.id == a.receivable_id)
        .where(
            p.company_id == company_id,
            p.paid_on >= first,
            p.paid_on <= today,
            r.currency == currency,
        )
        .subquery("paid")
    )
    channel = (
        select(d.channel)
        .where(
            d.outbox_id == o.id,
            d.status.in_(DELIVERED),
            d.recipient_role == Recipient.DEBTOR.value,
        )
        .order_by(d.id)
        .limit(1)
        .correlate(t.outbox)
        .scalar_subquery()
    )
    attributed = (
        select(paid.c.amount, o.step.label("step"), channel.label("channel"))
        .select_from(paid)
        .outerjoin(t.outbox, o.id == paid.c.claim)
        .subquery("attributed")
    )
    return [
        (row.step, row.channel, int(row.total))
        for row in conn.execute(
            select(
                attributed.c.step,
                attributed.c.channel,
                func.sum(attributed.c.amount).label("total"),
            ).group_by(attributed.c.step, attributed.c.channel)
        )
    ]


def _costs(conn: Connection, company_id: int, start: datetime, end: datetime) -> dict[str, Decimal]:
    """What the messages of [start, end) cost, per channel (every recipient)."""
    d = t.deliveries.c
    return {
        str(row[0]): Decimal(str(row[1] or 0))
        for row in conn.execute(
            select(d.channel, func.sum(d.cost))
            .where(d.company_id == company_id, d.at >= start, d.at < end)
            .group_by(d.channel)
        )
    }


def _tasks(
    conn: Connection, company_id: int, start: datetime, end: datetime
) -> tuple[list[DueTask], int, int]:
    """Open tasks due today (the first few, and how many), and how many are overdue."""
    k, c = t.tasks.c, t.customers.c
    counts = conn.execute(
        select(
            _sum_when(k.due_at < start, 1).label("overdue"),
            _sum_when(and_(k.due_at >= start, k.due_at < end), 1).label("today"),
        ).where(k.company_id == company_id, k.status == "open", k.due_at < end)
    ).one()
    shown = [
        DueTask(int(row.id), str(row.external_id), str(row.name), row.due_at, str(row.message))
        for row in conn.execute(
            select(k.id, c.external_id, c.name, k.due_at, k.message)
            .join(t.customers, c.id == k.customer_id)
            .where(
                k.company_id == company_id,
                k.status == "open",
                k.due_at >= start,
                k.due_at < end,
            )
            .order_by(k.due_at, k.id)
            .limit(TASKS_SHOWN)
        )
    ]
    return shown, int(counts.today), int(counts.overdue)


def _overdue_debtors(conn: Connection, company_id: int, today: date) -> int:
    r = t.receivables.c
    return int(
        conn.execute(
            select(func.count(func.distinct(r.customer_id))).where(
                r.company_id == company_id, r.balance_minor > 0, r.due_on < today
            )
        ).scalar_one()
    )


def overview(
    conn: Connection, company_id: int, currency: str, today: date, timezone: str
) -> Overview:
    """Every figure of the overview as of the company-local ``today``."""
    tz = ZoneInfo(timezone)
    by_currency, terms = _open_balances(conn, company_id, currency, today)
    sales = _sales(conn, company_id, currency, today)
    collected = _collected_since(conn, company_id, currency, today)
    end = _start(today + timedelta(days=1), tz)

    def money(minor: int) -> Money:
        return Money.from_minor(minor, currency)

    periods: list[Period] = []
    for n in PERIODS:
        first = today - timedelta(days=n - 1)
        start = _start(first, tz)
        beginning = terms[f"before{n}"] + collected[n]
        sent, delivered, failed, opened, read = _messages(conn, company_id, start, end)
        recovered = _recovered(conn, company_id, currency, first, today)
        phases: dict[str | None, int] = defaultdict(int)
        channels: dict[str | None, int] = defaultdict(int)
        for step, channel, amount in recovered:
            phases[step] += amount
            channels[channel] += amount
        costs = _costs(conn, company_id, start, end)
        for channel in costs:
            channels.setdefault(channel, 0)
        periods.append(
            Period(
                n,
                money(sales[n]),
                money(beginning),
                dso(money(terms["ending"]).amount, money(sales[n]).amount, n),
                cei(
                    money(beginning).amount,
                    money(sales[n]).amount,
                    money(terms["ending"]).amount,
                    money(terms["ending_current"]).amount,
                ),
                sent,
                delivered,
                failed,
                opened,
                read,
                money(sum(phases.values())),
                sorted(
                    ((step, money(v)) for step, v in phases.items()),
                    key=lambda x: (x[0] is None, x[0] or ""),
                ),
                sorted(
                    (
                        (
                            ch,
                            money(v),
                            Money.of(costs.get(ch or "", Decimal(0)), currency),
                        )
                        for ch, v in channels.items()
                    ),
                    key=lambda x: (x[0] is None, x[0] or ""),
                ),
            )
        )
    today_tasks, today_count, overdue_count = _tasks(conn, company_id, _start(today, tz), end)
    empty = {name: 0 for name in BUCKETS}
    own = by_currency.pop(currency, empty)
    return Overview(
        today,
        currency,
        {name: money(own[name]) for name in BUCKETS},
        {
            cur: {name: Money.from_minor(v, cur) for name, v in buckets.items()}
            for cur, buckets in sorted(by_currency.items())
        },
        money(sum(own.values())),
        money(own["current"]),
        periods,
        today_tasks,
        today_count,
        overdue_count,
        _overdue_debtors(conn, company_id, today),
    )


TREND_DAYS = 90


@dataclass(frozen=True)
class Week:
    """One week of the trend: Monday to Sunday, cut to the trend's first and last day."""

    first: date
    last: date
    messages: int  # messages to debtors (every attempt recorded, as the overview's "sent")
    recovered: Money  # payments dated in the week, net of reversals (company currency)


def trend(
    conn: Connection, company_id: int, currency: str, today: date, timezone: str
) -> list[Week]:
    """The last ``TREND_DAYS`` days (today included) by calendar week, oldest first: the
    messages to debtors and the amount recovered in each. Over the whole trend they add
    up to the overview's 90-day "sent" and "recovered"."""
    tz = ZoneInfo(timezone)
    first = today - timedelta(days=TREND_DAYS - 1)
    bounds: list[tuple[date, date]] = []
    start = first
    while start <= today:
        end = min(start + timedelta(days=6 - start.weekday()), today)
        bounds.append((start, end))
        start = end + timedelta(days=1)
    d = t.deliveries.c
    sent = conn.execute(
        select(
            *(
                _sum_when(
                    and_(d.at >= _start(a, tz), d.at < _start(b + timedelta(days=1), tz)), 1
                ).label(f"w{i}")
                for i, (a, b) in enumerate(bounds)
            )
        ).where(
            d.company_id == company_id,
            d.at >= _start(first, tz),
            d.at < _start(today + timedelta(days=1), tz),
            d.recipient_role == Recipient.DEBTOR.value,
        )
    ).one()
    a, p, r = t.allocations.c, t.payments.c, t.receivables.c
    paid = conn.execute(
        select(
            *(
                _sum_when(and_(p.paid_on >= x, p.paid_on <= y), a.amount_minor).label(f"w{i}")
                for i, (x, y) in enumerate(bounds)
            )
        )
        .select_from(t.allocations)
        .join(t.payments, p.id == a.payment_id)
        .join(t.receivables, r.id == a.receivable_id)
        .where(
            p.company_id == company_id,
            p.paid_on >= first,
            p.paid_on <= today,
            r.currency == currency,
        )
    ).one()
    return [
        Week(x, y, int(sent[i]), Money.from_minor(int(paid[i]), currency))
        for i, (x, y) in enumerate(bounds)
    ]


__all__ = ["PERIODS", "TREND_DAYS", "DueTask", "Overview", "Period", "Week", "overview", "trend"]
