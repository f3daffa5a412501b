"""Importing customers: each row read, then inserted or updated by ``external_id`` with its
policy resolved, its search index refreshed and the opt-outs it lists added."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from cobro.domain.assignment import resolve_policy
from cobro.engine.debtor_terms import index_debtors
from cobro.intake.columns import ATTR_PREFIX, CUSTOMER_KINDS
from cobro.intake.import_cells import Fields, column_max_len
from cobro.intake.import_run import Parsed, Run, bulk_update, customer_ids_of, existing_rows
from cobro.store import tables as t

OPTOUT_CHANNELS = ("email", "sms", "push", "voice")

_CUSTOMER_COLS = (
    "name",
    "kind",
    "group_name",
    "language",
    "timezone",
    "email",
    "phone",
    "invalid_email",
    "invalid_phone",
    "tags",
    "attributes",
    "policy",
    "effective_policy",
)


def parse_customer(f: Fields, run: Run) -> dict[str, Any]:
    c = t.customers
    v: dict[str, Any] = {
        "external_id": f.text("external_id", column_max_len(c, "external_id"), required=True),
        "name": f.text("name", column_max_len(c, "name"), required=True),
    }
    if f.has("kind"):
        v["kind"] = f.choice("kind", CUSTOMER_KINDS, "person")
    if f.has("group"):
        v["group_name"] = f.text("group", column_max_len(c, "group_name"))
    if f.has("language"):
        v["language"] = f.language("language")
    if f.has("timezone"):
        v["timezone"] = f.timezone("timezone")
    if f.has("email"):
        f.address("email", f.email, "the customer", v)
    if f.has("phone"):
        f.address("phone", lambda col: f.phone(col, run.phone_region), "the customer", v)
    if f.has("tags"):
        tags = ",".join(f.items("tags"))
        if len(tags) > column_max_len(c, "tags"):
            f.fail("tags", f"are longer than {column_max_len(c, 'tags')} characters in all")
        v["tags"] = tags
    if f.has("policy"):
        policy = f.raw("policy")
        policies = run.ws.config.policies
        if policy is not None and policy not in policies:
            f.fail("policy", f"{policy!r} is not a policy of cobro.yaml ({', '.join(policies)})")
        v["policy"] = policy
    if f.has("optouts"):
        channels = f.items("optouts")
        bad = [x for x in channels if x not in OPTOUT_CHANNELS]
        if bad:
            f.fail(
                "optouts",
                f"unknown channel {', '.join(repr(x) for x in bad)}; "
                f"the channels are {', '.join(OPTOUT_CHANNELS)}",
            )
        v["optouts"] = channels
    attrs = {k[len(ATTR_PREFIX) :]: f.raw(k) for k in f.data if k.startswith(ATTR_PREFIX)}
    if attrs:
        v["attributes"] = attrs
    return v


def store_customers(conn: Connection, run: Run, batch: list[Parsed]) -> None:
    cfg = run.ws.config
    rules = cfg.assignment_rules()
    existing = existing_rows(conn, run, t.customers, batch)
    defaults: dict[str, Any] = {
        "kind": "person",
        "group_name": None,
        "language": None,
        "timezone": None,
        "email": None,
        "phone": None,
        "invalid_email": None,
        "invalid_phone": None,
        "tags": "",
        "attributes": {},
        "policy": None,
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    updated_from: list[dict[str, Any]] = []
    for p in batch:
        old = existing.get(p.external_id)
        base = old if old is not None else defaults
        row: dict[str, Any] = {c: base.get(c) for c in _CUSTOMER_COLS}
        row.update({k: v for k, v in p.values.items() if k in row and k != "attributes"})
        attrs: dict[str, Any] = dict(base.get("attributes") or {})
        for key, value in (p.values.get("attributes") or {}).items():
            if value is None:
                attrs.pop(key, None)
            else:
                attrs[key] = value
        row["attributes"] = attrs
        row["effective_policy"] = resolve_policy(
            rules,
            cfg.default_policy,
            explicit=row["policy"],
            kind=row["kind"],
            group=row["group_name"],
            language=row["language"],
            tags=row["tags"].split(",") if row["tags"] else [],
        )
        if old is None:
            row.update(
                company_id=run.company_id,
                external_id=p.external_id,
                created_at=run.now,
                updated_at=run.now,
            )
            inserts.append(row)
        elif any(row[c] != old[c] for c in _CUSTOMER_COLS if c != "attributes") or (
            attrs != (old["attributes"] or {})
        ):
            row.update(id=old["id"], updated_at=run.now)
            updates.append(row)
            updated_from.append(old)
        else:
            run.unchanged += 1
    if inserts:
        conn.execute(insert(t.customers), inserts)
    bulk_update(conn, t.customers, (*_CUSTOMER_COLS, "updated_at"), updates)
    searched = [
        int(row["id"])
        for row, old in zip(updates, updated_from, strict=True)
        if any(row[c] != old[c] for c in ("name", "email", "phone"))
    ]
    searched += customer_ids_of(conn, run, (row["external_id"] for row in inserts)).values()
    index_debtors(conn, run.company_id, searched)
    run.inserted += len(inserts)
    run.updated += len(updates)
    _store_optouts(conn, run, batch)


def _store_optouts(conn: Connection, run: Run, batch: list[Parsed]) -> None:
    """The opt-outs an ``optouts`` column lists, added (one the file leaves out is kept:
    a STOP reply is not undone by an export that does not know of it)."""
    from cobro.engine.optouts import add_optout

    wanted = [p for p in batch if p.values.get("optouts")]
    if not wanted:
        return
    ids = customer_ids_of(conn, run, (p.external_id for p in wanted))
    for p in wanted:
        for channel in p.values["optouts"]:
            add_optout(
                conn, run.company_id, ids[p.external_id], channel, "import", run.now,
                f"import line {p.line}",
            )  # fmt: skip
