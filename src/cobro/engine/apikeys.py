"""API keys: created per company with a role, shown once, kept as a digest, revoked.

A key reads ``cobro_<prefix>_<secret>``: the prefix (public, unique) finds the row, and
the SHA-256 digest of the whole key, compared in constant time, proves it. The secret
part has 256 bits from the system's random source, so a fast digest is as safe to keep
as a password hash is for a password, and checking a key costs microseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Connection, Row, insert, select, update

from cobro.errors import CobroError
from cobro.store import tables as t

Role = Literal["read-only", "collector", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
_KEY = re.compile(r"cobro_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
_NAME_MAX = 100


class ApiKeyError(CobroError):
    """A key cannot be created or revoked as asked (bad name, role or unknown key)."""


@dataclass(frozen=True)
class ApiKey:
    id: int
    company_id: int
    prefix: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def allows(role: Role, needed: Role) -> bool:
    """Whether ``role`` may do what ``needed`` may (admin > collector > read-only)."""
    return ROLES.index(role) >= ROLES.index(needed)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _row(r: Row[Any]) -> ApiKey:
    return ApiKey(
        r.id, r.company_id, r.prefix, r.name, r.role, r.created_at, r.revoked_at, r.last_used_at
    )


def create_key(
    conn: Connection, company_id: int, name: str, role: str, now: datetime
) -> tuple[ApiKey, str]:
    """A new key for the company: its row and the key itself (shown once, never kept)."""
    name = name.strip()
    if not name or len(name) > _NAME_MAX or any(ord(ch) < 32 for ch in name):
        raise ApiKeyError(f"name: give 1 to {_NAME_MAX} printable characters")
    if role not in ROLES:
        raise ApiKeyError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    prefix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    key = f"cobro_{prefix}_{secrets.token_urlsafe(32)}"
    result = conn.execute(
        insert(t.api_keys).values(
            company_id=company_id,
            prefix=prefix,
            digest=_digest(key),
            name=name,
            role=role,
            created_at=now,
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    made = ApiKey(int(pk[0]), company_id, prefix, name, role, now, None, None)
    return made, key


def list_keys(conn: Connection, company_id: int) -> list[ApiKey]:
    k = t.api_keys.c
    rows = conn.execute(select(t.api_keys).where(k.company_id == company_id).order_by(k.id))
    return [_row(r) for r in rows]


def revoke_key(conn: Connection, company_id: int, which: str, now: datetime) -> ApiKey:
    """Revoke the company's key named by its prefix (or the whole key, or its name when
    only one key has it)."""
    k = t.api_keys.c
    found = _KEY.fullmatch(which)
    prefix = found.group(1) if found else which
    rows = list(
        conn.execute(
            select(t.api_keys).where(
                k.company_id == company_id, (k.prefix == prefix) | (k.name == which)
            )
        )
    )
    if not rows:
        raise ApiKeyError(f"no key {which!r} in this company: see 'cobro keys list'")
    if len(rows) > 1:
        raise ApiKeyError(f"{len(rows)} keys are named {which!r}: revoke one by its prefix")
    row = rows[0]
    if row.revoked_at is None:
        conn.execute(update(t.api_keys).where(k.id == row.id).values(revoked_at=now))
    return _row(conn.execute(select(t.api_keys).where(k.id == row.id)).one())


def key_digest(key: str) -> str | None:
    """What is kept of ``key`` (its SHA-256, hex), or None when it is no key (malformed)."""
    return _digest(key) if _KEY.fullmatch(key) else None


# Whether a key found before is still live, on a SQLite driver connection: its row by its
# primary key, still with the same digest and not revoked.
SQLITE_STILL_LIVE = (
    "SELECT 1 FROM api_keys WHERE id = :id AND digest = :digest AND revoked_at IS NULL"
)


def authenticate(conn: Connection, key: str) -> ApiKey | None:
    """The live key ``key`` is, or None (malformed, unknown, wrong or revoked)."""
    found = _KEY.fullmatch(key)
    if found is None:
        return None
    row = conn.execute(select(t.api_keys).where(t.api_keys.c.prefix == found.group(1))).first()
    if row is None or not hmac.compare_digest(row.digest, _digest(key)):
        return None
    if row.revoked_at is not None:
        return None
    return _row(row)
