"""Banking notification assignments: which contacts hold which notice type (seed 000)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select

from cobro.domain.model import BANKING_TYPES
from cobro.domain.routing import ContactInfo, can_be_assigned
from cobro.errors import CobroError
from cobro.store import tables as t
from cobro.store.db import counted, insert_ignoring


class AssignmentRefused(CobroError):
    """A contact cannot be assigned to a banking notification; the message says why."""


def _type(notice_type: str) -> str:
    if notice_type not in BANKING_TYPES:
        raise AssignmentRefused(
            f"unknown notification type {notice_type!r}; use one of: {', '.join(BANKING_TYPES)}"
        )
    return notice_type


def _contacts(conn: Connection, company_id: int, refs: list[str]) -> list[ContactInfo]:
    c = t.contacts.c
    found = {
        r.external_id: ContactInfo(
            r.id, r.external_id, r.email, frozenset(filter(None, r.roles.split(",")))
        )
        for r in conn.execute(
            select(c.id, c.external_id, c.email, c.roles).where(
                c.company_id == company_id, c.external_id.in_(refs)
            )
        )
    }
    missing = [r for r in refs if r not in found]
    if missing:
        raise AssignmentRefused(f"no contact with external_id {', '.join(map(repr, missing))}")
    return [found[r] for r in refs]


def assign(
    conn: Connection, company_id: int, notice_type: str, refs: list[str], at: datetime
) -> int:
    """Assign contacts to a notice type; all or none (a refused contact assigns nobody)."""
    notice_type = _type(notice_type)
    contacts = _contacts(conn, company_id, refs)
    reasons = [r for c in contacts if (r := can_be_assigned(c))]
    if reasons:
        raise AssignmentRefused("; ".join(reasons))
    added = 0
    for contact in contacts:
        added += counted(
            conn,
            insert_ignoring(conn, t.banking_assignments)
            .values(
                company_id=company_id,
                notice_type=notice_type,
                contact_id=contact.id,
                assigned_at=at,
            )
            .on_conflict_do_nothing(),
        )
    return added


def unassign(conn: Connection, company_id: int, notice_type: str, refs: list[str]) -> int:
    notice_type = _type(notice_type)
    ids = [c.id for c in _contacts(conn, company_id, refs)]
    ba = t.banking_assignments.c
    return counted(
        conn,
        delete(t.banking_assignments).where(
            ba.company_id == company_id, ba.notice_type == notice_type, ba.contact_id.in_(ids)
        ),
    )


@dataclass(frozen=True)
class Assignment:
    notice_type: str
    contact: str
    name: str
    email: str | None
    customer: str


def assignments(conn: Connection, company_id: int) -> list[Assignment]:
    ba, c, cu = t.banking_assignments.c, t.contacts.c, t.customers.c
    return [
        Assignment(*row)
        for row in conn.execute(
            select(ba.notice_type, c.external_id, c.name, c.email, cu.external_id)
            .join(t.contacts, c.id == ba.contact_id)
            .join(t.customers, cu.id == c.customer_id)
            .where(ba.company_id == company_id)
            .order_by(ba.notice_type, cu.external_id, c.external_id)
        )
    ]


@dataclass(frozen=True)
class Candidate:
    """A contact that may be assigned: it holds the banking role."""

    contact: str
    name: str
    email: str | None
    customer: str
    customer_name: str


def candidates(
    conn: Connection, company_id: int, text: str = "", limit: int = 200
) -> list[Candidate]:
    """The company's contacts with the banking role (the only ones that may be assigned),
    by customer then contact; ``text`` narrows them (contact or customer id, name, email)."""
    from sqlalchemy import func, literal, or_

    from cobro.domain.routing import BANKING_ROLE
    from cobro.store.db import like_literal

    c, cu = t.contacts.c, t.customers.c
    query = (
        select(c.external_id, c.name, c.email, cu.external_id, cu.name)
        .join(t.customers, cu.id == c.customer_id)
        .where(
            c.company_id == company_id,
            (literal(",") + c.roles + literal(",")).like(f"%,{BANKING_ROLE},%"),
        )
        .order_by(cu.external_id, c.external_id)
        .limit(limit)
    )
    if text:
        pattern = f"%{like_literal(text.lower())}%"
        query = query.where(
            or_(
                *(
                    func.lower(col).like(pattern, escape="/")
                    for col in (c.external_id, c.name, c.email, cu.external_id, cu.name)
                )
            )
        )
    return [Candidate(*row) for row in conn.execute(query)]
