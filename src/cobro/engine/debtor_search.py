"""The dashboard's debtor list: found by name, id, email or phone, filtered by segment,
policy, phase, blocked and how long overdue, sorted, a page at a time.

Pages are keyset pages: each continues after the sort key and id of the last row of the
one before (never an OFFSET), so page 1,000 costs what page 1 does. Sorted by name or id,
a page reads the customers' indexes in order and stops once it is full; the debt shown on
each row is summed for that page's debtors only. Sorting by overdue amount or age needs
every debtor's debt, summed over their open items, first.

The search reads ``customer_terms`` (``cobro.engine.debtor_terms``) by prefix: every word
typed must start a word of the name, the id or the email address; or the digits typed,
the phone number.

``search_debtors`` builds its statements for each request and runs on any database. A
search whose cost does not grow with the company (``bounded``: words typed, sorted by
name or id, no filter that reads every debtor) is also read by ``search_debtors_sqlite``
on SQLite's driver connection, with statements written once: the same page for a few
hundred microseconds of Python, which lets the web server read it on its event loop.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    exists,
    false,
    func,
    or_,
    select,
    true,
    tuple_,
)

from cobro.domain.money import Money
from cobro.domain.reports import BUCKET_DAYS
from cobro.domain.segments import Segment
from cobro.engine.debtor_terms import LAST, PHONE, words
from cobro.engine.segments import members_select
from cobro.store import tables as t

Sort = Literal["name", "id", "overdue", "oldest"]
SORTS: tuple[Sort, ...] = ("name", "id", "overdue", "oldest")
PAGE = 50
NEVER = date(9999, 12, 31)  # the "oldest overdue" of a debtor with nothing overdue
MAX_QUERY = 200
DENSE = 1000  # a search word more debtors have is checked row by row (``_text_match``)


@dataclass(frozen=True)
class DebtorFilter:
    """What the list is asked for; every field is optional."""

    text: str = ""
    segment: Segment | None = None
    policy: str | None = None
    phase: str | None = None  # a dunning level's step, ``policy/key``
    blocked: bool | None = None
    overdue: str | None = None  # an aging bucket of the debtor's oldest overdue item
    sort: Sort = "name"


@dataclass(frozen=True)
class DebtorRow:
    id: int
    external_id: str
    name: str
    email: str | None
    phone: str | None
    policy: str | None
    phase: str | None
    blocked: bool
    open: Money
    overdue: Money
    days_overdue: int


@dataclass
class DebtorPage:
    rows: list[DebtorRow] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    """The key a cursor holds; None for no cursor or one that is not ours."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except ValueError:
        return None
    if (
        not isinstance(values, list)
        or len(values) != 2
        or not isinstance(values[1], int)
        or not isinstance(values[0], (str, int))
    ):
        return None
    return values


def _found_by(conn: Connection, company_id: int, prefix: str, dense: int) -> set[int] | None:
    """The debtors with a term starting with ``prefix``; None when more than ``dense``
    have one (then the list is read in its order and each row checked)."""
    ct = t.customer_terms.c
    ids = {
        int(i)
        for i in conn.execute(
            select(ct.customer_id)
            .where(ct.company_id == company_id, ct.term >= prefix, ct.term < prefix + LAST)
            .distinct()
            .limit(dense + 1)
        ).scalars()
    }
    return None if len(ids) > dense else ids


def _has_term(prefix: str) -> ColumnElement[bool]:
    ct = t.customer_terms.c
    return exists().where(
        ct.customer_id == t.customers.c.id, ct.term >= prefix, ct.term < prefix + LAST
    )


def _text_match(
    conn: Connection, company_id: int, text: str, dense: int = DENSE
) -> tuple[ColumnElement[bool], bool]:
    """Every word of ``text`` starting a word of the name, the id or the email address
    (any case); or its digits (3 or more) starting the phone number, with or without its
    country code. Read from ``customer_terms`` by prefix: the debtors few enough words
    fit are listed first (at most ``dense``); a word many debtors have is checked row by row on
    the way through the list, which then fills a page soon. The flag: whether the
    condition names every debtor it can match (then they are read by id)."""
    wanted: list[ColumnElement[bool]] = []
    alternatives = [words(text)]
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) >= 3:
        alternatives.append([PHONE + digits])
    found: set[int] = set()
    listed = True
    for prefixes in alternatives:
        known: set[int] | None = None
        checked: list[ColumnElement[bool]] = []
        for prefix in prefixes:
            ids = _found_by(conn, company_id, prefix, dense) if known != set() else set()
            if ids is None:
                checked.append(_has_term(prefix))
            else:
                known = ids if known is None else known & ids
        if not checked:
            found |= known or set()
        elif known is None:
            wanted.append(and_(*checked))
            listed = False
        elif known:
            wanted.append(and_(t.customers.c.id.in_(sorted(known)), *checked))
    if found:
        wanted.append(t.customers.c.id.in_(sorted(found)))
    return or_(false(), *wanted), listed


def _overdue_bucket(name: str, today: date) -> ColumnElement[bool]:
    """The debtor's oldest overdue open item is ``name``'s days past due (``current``: it
    owes something, none of it overdue)."""
    r = t.receivables.c
    mine = and_(r.customer_id == t.customers.c.id, r.balance_minor > 0)
    low, high = BUCKET_DAYS[name]
    if low is None:  # current
        return and_(exists().where(mine), ~exists().where(mine, r.due_on < today))
    newest_due = today - timedelta(days=low)
    inside = r.due_on <= newest_due
    if high is not None:
        inside = and_(inside, r.due_on >= today - timedelta(days=high))
        return and_(
            exists().where(mine, inside),
            ~exists().where(mine, r.due_on < today - timedelta(days=high)),
        )
    return exists().where(mine, inside)


def _debt(company_id: int, currency: str, today: date) -> Any:
    """Per debtor with open items: overdue balance (company currency) and oldest due date."""
    r = t.receivables.c
    late = r.due_on < today
    return (
        select(
            r.customer_id.label("customer_id"),
            func.sum(case((and_(late, r.currency == currency), r.balance_minor), else_=0)).label(
                "overdue_minor"
            ),
            func.min(case((late, r.due_on), else_=None)).label("oldest"),
        )
        .where(r.company_id == company_id, r.balance_minor > 0)
        .group_by(r.customer_id)
        .subquery("debt")
    )


def search_debtors(
    conn: Connection,
    company_id: int,
    currency: str,
    today: date,
    wanted: DebtorFilter,
    cursor: str | None = None,
    limit: int = PAGE,
    dense: int = DENSE,
) -> DebtorPage:
    """A page of the company's debtors matching ``wanted``, after ``cursor``. ``dense``:
    how many debtors a search word may find before they are checked row by row rather
    than listed (``_text_match``)."""
    c, lv = t.customers.c, t.dunning_levels.c
    text = wanted.text.strip()[:MAX_QUERY]
    matching, listed = _text_match(conn, company_id, text, dense) if text else (true(), False)
    # A few debtors named by id are read by it and sorted: ``+ 0`` keeps SQLite, which
    # has no statistics, from reading the company's whole name index in order instead
    # (every index of the table starts with the company).
    company = c.company_id + 0 if listed else c.company_id
    q = select(c.id, c.external_id, c.name).where(company == company_id, matching)
    if wanted.policy:
        q = q.where(c.effective_policy == wanted.policy)
    if wanted.blocked is not None:
        q = q.where(c.blocked.is_(wanted.blocked))
    if wanted.phase:
        policy, _, phase_key = wanted.phase.partition("/")
        q = q.where(
            exists().where(lv.customer_id == c.id, lv.policy == policy, lv.phase_key == phase_key)
        )
    if wanted.overdue:
        q = q.where(_overdue_bucket(wanted.overdue, today))
    if wanted.segment is not None:
        members = members_select(company_id, wanted.segment, today, currency).order_by(None)
        q = q.where(c.id.in_(select(members.subquery().c.customer_id)))
    after = decode_cursor(cursor)
    if wanted.sort in ("name", "id"):
        column = c.name if wanted.sort == "name" else c.external_id
        q = q.add_columns(column.label("k"))
        if after is not None:
            q = q.where(tuple_(column, c.id) > tuple_(str(after[0]), after[1]))
        q = q.order_by(column, c.id)
    else:
        debt = _debt(company_id, currency, today)
        start: Any = None
        if wanted.sort == "overdue":  # the largest overdue balance first
            key: Any = -func.coalesce(debt.c.overdue_minor, 0)
            if after is not None and isinstance(after[0], int):
                start = after[0]
        else:  # oldest: the earliest overdue due date first, debtors with none last
            key = func.coalesce(debt.c.oldest, NEVER)
            if after is not None and isinstance(after[0], str):
                try:
                    start = date.fromisoformat(after[0])
                except ValueError:
                    start = None
        q = q.outerjoin(debt, debt.c.customer_id == c.id).add_columns(key.label("k"))
        if start is not None:
            q = q.where(tuple_(key, c.id) > tuple_(start, after[1]))  # type: ignore[index]
        q = q.order_by(key, c.id)
    found = conn.execute(q.limit(limit + 1)).all()
    page = found[:limit]
    rows = _rows(conn, company_id, currency, today, [int(r.id) for r in page])
    next_cursor = None
    if len(found) > limit:
        last = page[-1]
        k: Any = last.k
        if isinstance(k, date):
            k = k.isoformat()
        elif wanted.sort == "overdue":  # a sum: an integer (a Decimal on PostgreSQL)
            k = int(k)
        else:
            k = str(k)
        next_cursor = encode_cursor([k, int(last.id)])
    return DebtorPage(rows, next_cursor)


def _rows(
    conn: Connection, company_id: int, currency: str, today: date, ids: list[int]
) -> list[DebtorRow]:
    """The page's debtors with their policy, phase and debt, in the order of ``ids``."""
    if not ids:
        return []
    c, lv, r = t.customers.c, t.dunning_levels.c, t.receivables.c
    info = {
        int(row.id): row
        for row in conn.execute(
            select(
                c.id,
                c.external_id,
                c.name,
                c.email,
                c.phone,
                c.effective_policy,
                c.blocked,
                lv.policy.label("level_policy"),
                lv.phase_key,
            )
            .outerjoin(t.dunning_levels, lv.customer_id == c.id)
            # By id (``+ 0``: SQLite would read an index of the company's debtors).
            .where(c.company_id + 0 == company_id, c.id.in_(ids))
        )
    }
    debt: dict[int, tuple[int, int, date | None]] = {}
    for each in conn.execute(
        select(
            r.customer_id,
            func.sum(case((r.currency == currency, r.balance_minor), else_=0)),
            func.sum(
                case((and_(r.currency == currency, r.due_on < today), r.balance_minor), else_=0)
            ),
            func.min(case((r.due_on < today, r.due_on), else_=None)),
        )
        # ``ids`` are the company's debtors already: by them alone, the planner reads the
        # index on customer_id (with the company too, SQLite scans the open items' index).
        .where(r.customer_id.in_(ids), r.balance_minor > 0)
        .group_by(r.customer_id)
    ):
        debt[int(each[0])] = (int(each[1] or 0), int(each[2] or 0), each[3])
    return [
        _debtor_row(currency, today, tuple(info[cid]), debt.get(cid, (0, 0, None))) for cid in ids
    ]


def _debtor_row(
    currency: str, today: date, info: tuple[Any, ...], debt: tuple[int, int, date | None]
) -> DebtorRow:
    """A row of the list: ``info`` (id, external id, name, email, phone, policy, blocked,
    level's policy and phase), ``debt`` (open and overdue minor units, oldest overdue due
    date)."""
    cid, external_id, name, email, phone, policy, blocked, level_policy, phase_key = info
    open_minor, overdue_minor, oldest = debt
    return DebtorRow(
        int(cid),
        str(external_id),
        str(name),
        email,
        phone,
        policy,
        f"{level_policy}/{phase_key}" if phase_key else None,
        bool(blocked),
        Money.from_minor(open_minor, currency),
        Money.from_minor(overdue_minor, currency),
        (today - oldest).days if oldest else 0,
    )


# -- the same search on SQLite's driver connection, for a bounded request ---------------

FAST_WORDS = 4  # a search of more words than this is read by ``search_debtors``

_SQLITE_TERMS = (
    "SELECT DISTINCT customer_id FROM customer_terms"
    " WHERE company_id = ? AND term >= ? AND term < ? LIMIT ?"
)
_SQLITE_HAVING_TERM = (
    "SELECT DISTINCT customer_id FROM customer_terms"
    " WHERE customer_id IN (SELECT value FROM json_each(?)) AND term >= ? AND term < ?"
)
_SQLITE_INFO = (
    "SELECT c.id, c.external_id, c.name, c.email, c.phone, c.effective_policy, c.blocked,"
    " lv.policy, lv.phase_key"
    " FROM customers AS c LEFT OUTER JOIN dunning_levels AS lv ON lv.customer_id = c.id"
    " WHERE c.company_id + 0 = ? AND c.id IN (SELECT value FROM json_each(?))"
)
_SQLITE_DEBT = (
    "SELECT customer_id,"
    " sum(CASE WHEN currency = :currency THEN balance_minor ELSE 0 END),"
    " sum(CASE WHEN currency = :currency AND due_on < :today THEN balance_minor ELSE 0 END),"
    " min(CASE WHEN due_on < :today THEN due_on END)"
    " FROM receivables"
    " WHERE customer_id IN (SELECT value FROM json_each(:ids)) AND balance_minor > 0"
    " GROUP BY customer_id"
)


def bounded(wanted: DebtorFilter) -> bool:
    """Whether ``search_debtors_sqlite`` may read ``wanted``: sorted by name or id, and
    either words typed (at most ``FAST_WORDS``; filtered by policy or blocked at most) or
    nothing at all. A segment, a phase, days overdue, sorting by debt, or a filter
    without words may read every debtor of the company."""
    if wanted.sort not in ("name", "id") or wanted.segment or wanted.phase or wanted.overdue:
        return False
    text = wanted.text.strip()[:MAX_QUERY]
    if text:
        return len(words(text)) <= FAST_WORDS
    return wanted.policy is None and wanted.blocked is None


def search_debtors_sqlite(
    dbapi: sqlite3.Connection,
    company_id: int,
    currency: str,
    today: date,
    wanted: DebtorFilter,
    cursor: str | None = None,
    limit: int = PAGE,
    dense: int = DENSE,
) -> DebtorPage | None:
    """``search_debtors``' page for a ``bounded`` request, read in one transaction on a
    SQLite driver connection (autocommit mode: no transaction open) with statements
    written once; None when a word of every alternative is one more than ``dense`` debtors
    have (the debtors are then checked row by row: ``search_debtors``)."""
    if not bounded(wanted):
        raise ValueError("search_debtors_sqlite reads bounded searches only")
    dbapi.execute("BEGIN")
    try:
        return _sqlite_page(dbapi, company_id, currency, today, wanted, cursor, limit, dense)
    finally:
        dbapi.execute("ROLLBACK")


def _sqlite_page(
    dbapi: sqlite3.Connection,
    company_id: int,
    currency: str,
    today: date,
    wanted: DebtorFilter,
    cursor: str | None,
    limit: int,
    dense: int,
) -> DebtorPage | None:
    text = wanted.text.strip()[:MAX_QUERY]
    column = "name" if wanted.sort == "name" else "external_id"
    where: list[str]
    params: list[Any]
    if text:
        ids = _sqlite_matching(dbapi, company_id, text, dense)
        if ids is None:
            return None
        if not ids:
            return DebtorPage()
        # By id, then sorted (``+ 0``, as ``search_debtors`` does for a listed search).
        where = ["company_id + 0 = ?", "id IN (SELECT value FROM json_each(?))"]
        params = [company_id, json.dumps(sorted(ids))]
    else:
        where, params = ["company_id = ?"], [company_id]
    if wanted.policy:
        where.append("effective_policy = ?")
        params.append(wanted.policy)
    if wanted.blocked is not None:
        where.append("blocked = ?")
        params.append(1 if wanted.blocked else 0)
    after = decode_cursor(cursor)
    if after is not None:
        where.append(f"({column}, id) > (?, ?)")
        params += [str(after[0]), after[1]]
    found = dbapi.execute(
        f"SELECT id, {column} FROM customers WHERE {' AND '.join(where)}"
        f" ORDER BY {column}, id LIMIT ?",
        [*params, limit + 1],
    ).fetchall()
    page = found[:limit]
    chosen = json.dumps([int(row[0]) for row in page])
    info = {int(row[0]): row for row in dbapi.execute(_SQLITE_INFO, (company_id, chosen))}
    debt: dict[int, tuple[int, int, date | None]] = {
        int(row[0]): (
            int(row[1] or 0),
            int(row[2] or 0),
            date.fromisoformat(row[3]) if row[3] else None,
        )
        for row in dbapi.execute(
            _SQLITE_DEBT, {"currency": currency, "today": today.isoformat(), "ids": chosen}
        )
    }
    rows = [
        _debtor_row(currency, today, info[int(row[0])], debt.get(int(row[0]), (0, 0, None)))
        for row in page
    ]
    next_cursor = None
    if len(found) > limit:
        next_cursor = encode_cursor([str(page[-1][1]), int(page[-1][0])])
    return DebtorPage(rows, next_cursor)


def _sqlite_matching(
    dbapi: sqlite3.Connection, company_id: int, text: str, dense: int
) -> set[int] | None:
    """The debtors ``_text_match`` finds for ``text`` (every word of an alternative
    starting a term of theirs), or None when in some alternative every word is one more
    than ``dense`` debtors have (``search_debtors`` then checks the debtors row by
    row)."""
    alternatives = [words(text)]
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) >= 3:
        alternatives.append([PHONE + digits])
    found: set[int] = set()
    for prefixes in alternatives:
        known: set[int] | None = None
        checked: list[str] = []
        # The same debtors in any order of the words: those likely rarer first (digits,
        # then the longest), so that a word every debtor has (``cliente``) is then only
        # checked on the few debtors the others found, not read up to ``dense``.
        for prefix in sorted(prefixes, key=lambda p: (not any(ch.isdigit() for ch in p), -len(p))):
            if known is not None:
                checked.append(prefix)
                continue
            ids = dbapi.execute(
                _SQLITE_TERMS, (company_id, prefix, prefix + LAST, dense + 1)
            ).fetchall()
            if len(ids) > dense:
                checked.append(prefix)
            else:
                known = {int(row[0]) for row in ids}
        if known is None:
            if checked:
                return None
            continue
        for prefix in checked:
            if not known:
                break
            listed = json.dumps(sorted(known))
            known &= {
                int(row[0])
                for row in dbapi.execute(_SQLITE_HAVING_TERM, (listed, prefix, prefix + LAST))
            }
        found |= known
    return found
