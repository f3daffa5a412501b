"""Importing contacts: the people of a customer who receive its messages (by role), each
with an email or a phone, upserted by ``external_id``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from cobro.intake.columns import CONTACT_ROLES
from cobro.intake.import_cells import Fields, column_max_len
from cobro.intake.import_run import (
    Parsed,
    Run,
    bulk_update,
    customer_ids_of,
    existing_rows,
    no_customer,
)
from cobro.store import tables as t

_CONTACT_COLS = (
    "customer_id",
    "name",
    "email",
    "phone",
    "invalid_email",
    "invalid_phone",
    "roles",
    "language",
)


def parse_contact(f: Fields, run: Run) -> dict[str, Any]:
    c = t.contacts
    v: dict[str, Any] = {
        "external_id": f.text("external_id", column_max_len(c, "external_id"), required=True),
        "customer": f.text("customer", column_max_len(t.customers, "external_id"), required=True),
        "name": f.text("name", column_max_len(c, "name"), required=True),
    }
    if f.has("email"):
        f.address("email", f.email, "the contact", v)
    if f.has("phone"):
        f.address("phone", lambda col: f.phone(col, run.phone_region), "the contact", v)
    if f.has("roles"):
        roles = f.items("roles")
        bad = [r for r in roles if r not in CONTACT_ROLES]
        if bad:
            f.fail(
                "roles",
                f"unknown role {', '.join(repr(r) for r in bad)}; "
                f"the roles are {', '.join(CONTACT_ROLES)}",
            )
        ordered = [r for r in CONTACT_ROLES if r in roles]
        v["roles"] = f",{','.join(ordered)}," if ordered else ""
    if f.has("language"):
        v["language"] = f.language("language")
    return v


def store_contacts(conn: Connection, run: Run, batch: list[Parsed]) -> None:
    customer_ids = customer_ids_of(conn, run, (p.values["customer"] for p in batch))
    existing = existing_rows(conn, run, t.contacts, batch)
    defaults: dict[str, Any] = {
        "email": None,
        "phone": None,
        "invalid_email": None,
        "invalid_phone": None,
        "roles": "",
        "language": None,
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for p in batch:
        ref = p.values["customer"]
        if ref not in customer_ids:
            run.reject(p.line, "customer", no_customer(ref))
            continue
        old = existing.get(p.external_id)
        base = old if old is not None else defaults
        row: dict[str, Any] = {c: base.get(c) for c in _CONTACT_COLS}
        row.update({k: v for k, v in p.values.items() if k in row})
        row["customer_id"] = customer_ids[ref]
        given = ("email", "phone", "invalid_email", "invalid_phone")
        if not any(row[c] for c in given):
            run.reject(p.line, "email", "a contact needs an email or a phone")
            continue
        if old is None:
            row.update(company_id=run.company_id, external_id=p.external_id, updated_at=run.now)
            inserts.append(row)
        elif any(row[c] != old[c] for c in _CONTACT_COLS):
            row.update(id=old["id"], updated_at=run.now)
            updates.append(row)
        else:
            run.unchanged += 1
    if inserts:
        conn.execute(insert(t.contacts), inserts)
    bulk_update(conn, t.contacts, (*_CONTACT_COLS, "updated_at"), updates)
    run.inserted += len(inserts)
    run.updated += len(updates)
