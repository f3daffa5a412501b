"""Segment membership as one SQL query: debtor attributes plus their open and overdue debt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Select, and_, case, func, literal, or_, select

from cobro.domain.money import Money
from cobro.domain.segments import Segment
from cobro.store import tables as t
from cobro.store.db import like_literal


def debt_summary(company_id: int, on: date, currency: str) -> Any:
    """Per debtor: open and overdue balance in ``currency``, overdue items, oldest overdue date."""
    r = t.receivables.c
    overdue = and_(r.due_on < on)
    in_cur = r.currency == currency
    return (
        select(
            r.customer_id.label("customer_id"),
            func.sum(case((in_cur, r.balance_minor), else_=0)).label("open_minor"),
            func.sum(case((and_(overdue, in_cur), r.balance_minor), else_=0)).label(
                "overdue_minor"
            ),
            func.sum(case((overdue, 1), else_=0)).label("overdue_items"),
            func.min(case((overdue, r.due_on), else_=None)).label("oldest_overdue"),
        )
        .where(r.company_id == company_id, r.balance_minor > 0)
        .group_by(r.customer_id)
        .subquery("debt")
    )


def members_select(
    company_id: int, segment: Segment, on: date, currency: str, *, overdue_only: bool = False
) -> Select[Any]:
    """Debtors in ``segment`` on ``on``: (customer_id, external_id, name, open, overdue, oldest).

    ``overdue_only`` keeps only debtors with some overdue debt (in any currency).
    """
    c = t.customers.c
    debt = debt_summary(company_id, on, currency)
    q = (
        select(c.id.label("customer_id"), c.external_id, c.name)
        .select_from(t.customers)
        .outerjoin(debt, debt.c.customer_id == c.id)
        .where(c.company_id == company_id)
        .order_by(c.external_id)
    )
    return _matching(
        q,
        segment,
        on,
        _Debt(
            func.coalesce(debt.c.open_minor, 0),
            func.coalesce(debt.c.overdue_minor, 0),
            debt.c.oldest_overdue,
            func.coalesce(debt.c.overdue_items, 0),
        ),
        overdue_only,
    )


def members_page_select(
    company_id: int, segment: Segment, on: date, currency: str, after: str | None, limit: int
) -> Select[Any]:
    """The same debtors as ``members_select``, the first ``limit`` after the external id
    ``after``: each debtor's debt is summed from its own items as the debtors are walked
    in the order of their external ids, so that a page does not sum every item of the
    company first."""
    c, r = t.customers.c, t.receivables.c

    def of_debtor(expr: Any) -> Any:
        return select(expr).where(r.customer_id == c.id, r.balance_minor > 0).scalar_subquery()

    overdue, in_cur = r.due_on < on, r.currency == currency
    debt = _Debt(
        of_debtor(func.coalesce(func.sum(case((in_cur, r.balance_minor), else_=0)), 0)),
        of_debtor(
            func.coalesce(func.sum(case((and_(overdue, in_cur), r.balance_minor), else_=0)), 0)
        ),
        of_debtor(func.min(case((overdue, r.due_on), else_=None))),
        of_debtor(func.coalesce(func.sum(case((overdue, 1), else_=0)), 0)),
    )
    q = (
        select(c.id.label("customer_id"), c.external_id, c.name)
        .where(c.company_id == company_id)
        .order_by(c.external_id)
        .limit(limit)
    )
    if after is not None:
        q = q.where(c.external_id > after)
    return _matching(q, segment, on, debt, False)


@dataclass(frozen=True)
class _Debt:
    """A debtor's debt as SQL expressions: open and overdue amounts in the company
    currency, the due date of its oldest overdue item, how many items are overdue."""

    open_minor: Any
    overdue_minor: Any
    oldest_overdue: Any
    overdue_items: Any


def _matching(
    q: Select[Any], segment: Segment, on: date, debt: _Debt, overdue_only: bool
) -> Select[Any]:
    """``q`` (over customers) with the debt columns and the segment's conditions."""
    c = t.customers.c
    q = q.add_columns(
        debt.open_minor.label("open_minor"),
        debt.overdue_minor.label("overdue_minor"),
        debt.oldest_overdue.label("oldest_overdue"),
    )
    s = segment
    if s.kind:
        q = q.where(c.kind == s.kind)
    if s.groups:
        q = q.where(func.lower(c.group_name).in_([g.lower() for g in s.groups]))
    if s.language:
        q = q.where(func.lower(c.language) == s.language.lower())
    for tag in s.tags:
        q = q.where(
            (literal(",") + c.tags + literal(",")).like(f"%,{like_literal(tag)},%", escape="/")
        )
    for key, value in s.attributes:
        q = q.where(c.attributes[key].as_string() == value)
    if s.policy:
        q = q.where(c.effective_policy == s.policy)
    if s.blocked is not None:
        q = q.where(c.blocked.is_(s.blocked))
    if s.overdue_min is not None:
        q = q.where(debt.overdue_minor >= s.overdue_min)
    if s.overdue_max is not None:
        q = q.where(debt.overdue_minor <= s.overdue_max)
    if s.open_min is not None:
        q = q.where(debt.open_minor >= s.open_min)
    if s.open_max is not None:
        q = q.where(debt.open_minor <= s.open_max)
    if s.days_overdue_min:
        q = q.where(debt.oldest_overdue <= on - timedelta(days=s.days_overdue_min))
    if s.days_overdue_max is not None:
        q = q.where(
            or_(
                debt.oldest_overdue.is_(None),
                debt.oldest_overdue >= on - timedelta(days=s.days_overdue_max),
            )
        )
    if overdue_only:
        q = q.where(debt.overdue_items > 0)
    return q


@dataclass(frozen=True)
class Member:
    external_id: str
    name: str
    open: Money
    overdue: Money
    days_overdue: int


def members(
    conn: Connection,
    company_id: int,
    segment: Segment,
    on: date,
    currency: str,
    limit: int | None = None,
) -> list[Member]:
    """Who is in ``segment`` on ``on``, with their debt in the company currency (the
    first ``limit`` by id, when given)."""
    query = members_select(company_id, segment, on, currency)
    if limit is not None:
        query = query.limit(limit)
    return [
        Member(
            row.external_id,
            row.name,
            Money.from_minor(int(row.open_minor), currency),
            Money.from_minor(int(row.overdue_minor), currency),
            (on - row.oldest_overdue).days if row.oldest_overdue else 0,
        )
        for row in conn.execute(query)
    ]


def count_members(
    conn: Connection, company_id: int, segment: Segment, on: date, currency: str
) -> int:
    """How many debtors are in ``segment`` on ``on``."""
    inner = members_select(company_id, segment, on, currency).order_by(None).subquery()
    return int(conn.execute(select(func.count()).select_from(inner)).scalar_one())
