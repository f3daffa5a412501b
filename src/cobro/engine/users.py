"""Staff users of the dashboard, per company: added with a role, passwords kept as argon2id
hashes, removed; and their sessions (a random token in the browser's cookie, its SHA-256
in the database), which end after a time idle, at a fixed end, at logout, or when the
user's password changes or the user is removed.

Roles are the API keys' (``cobro.engine.apikeys``): ``read-only`` reads, ``collector``
also acts on debtors (resends, promises, disputes, notes, tasks), ``admin`` also changes
the configuration.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection, Engine, Row, delete, insert, select, update

from cobro.engine.apikeys import ROLES, Role
from cobro.errors import CobroError
from cobro.store import tables as t

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
SESSION_IDLE = timedelta(hours=2)  # a session unused this long ends
SESSION_MAX = timedelta(hours=12)  # and every session ends this long after the login
SEEN_EVERY = timedelta(minutes=5)  # ``last_seen_at`` is written at most this often


class UserError(CobroError):
    """A staff user cannot be added, changed or removed as asked."""


@dataclass(frozen=True)
class StaffUser:
    id: int
    company_id: int
    email: str
    role: Role
    created_at: datetime
    last_login_at: datetime | None


# The cost of a password's hash, from the environment; the defaults are argon2-cffi's
# (RFC 9106's second recommended option: 3 passes over 64 MiB with 4 lanes). A lower cost
# is for test suites, which hash hundreds of passwords; a higher one for stronger servers.
COST_VARIABLES = {
    "time_cost": ("COBRO_PASSWORD_TIME_COST", 3, 1, 64),
    "memory_cost": ("COBRO_PASSWORD_MEMORY_KIB", 65_536, 8, 4_194_304),
    "parallelism": ("COBRO_PASSWORD_PARALLELISM", 4, 1, 64),
}


def password_cost() -> dict[str, int]:
    """The argon2id parameters passwords are hashed with (``COST_VARIABLES``); a value
    that is not a whole number in its range is a ``UserError`` naming the variable."""
    cost: dict[str, int] = {}
    for name, (variable, default, least, most) in COST_VARIABLES.items():
        given = os.environ.get(variable, "").strip()
        if not given:
            cost[name] = default
            continue
        try:
            value = int(given)
        except ValueError:
            value = least - 1
        if not least <= value <= most:
            raise UserError(f"{variable}: {given!r} is not a whole number from {least} to {most}")
        cost[name] = value
    least_memory = 8 * cost["parallelism"]
    if cost["memory_cost"] < least_memory:
        raise UserError(
            f"COBRO_PASSWORD_MEMORY_KIB: {cost['memory_cost']} is less than 8 KiB a lane "
            f"({least_memory} with COBRO_PASSWORD_PARALLELISM={cost['parallelism']})"
        )
    return cost


def lowered_cost() -> bool:
    """Whether passwords are hashed at less than the default cost."""
    cost = password_cost()
    return any(cost[name] < default for name, (_, default, _, _) in COST_VARIABLES.items())


@cache
def _hasher() -> PasswordHasher:
    """argon2id at ``password_cost()``."""
    cost = password_cost()
    return PasswordHasher(
        time_cost=cost["time_cost"],
        memory_cost=cost["memory_cost"],
        parallelism=cost["parallelism"],
    )


def normal_email(email: str) -> str:
    """``email`` as users are found by: checked, in lower case; ``UserError`` if it is not
    an address."""
    try:
        found = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise UserError(f"{email!r} is not an email address: {exc}") from None
    return str(found.normalized).lower()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"a password has at most {MAX_PASSWORD} characters")


def _role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise UserError(f"role: {role!r} is not one of {', '.join(ROLES)}")


def _user(row: Row[Any]) -> StaffUser:
    return StaffUser(
        int(row.id),
        int(row.company_id),
        str(row.email),
        _role(str(row.role)),
        row.created_at,
        row.last_login_at,
    )


def add_user(
    conn: Connection, company_id: int, email: str, role: str, password: str, now: datetime
) -> StaffUser:
    """A new staff user of the company; an email already there is refused."""
    address = normal_email(email)
    checked = _role(role)
    check_password(password)
    u = t.staff_users.c
    if conn.execute(select(u.id).where(u.company_id == company_id, u.email == address)).first():
        raise UserError(f"{address} is already a user of this company ('cobro users list')")
    new_id = conn.execute(
        insert(t.staff_users)
        .values(
            company_id=company_id,
            email=address,
            password_hash=_hasher().hash(password),
            role=checked,
            created_at=now,
            password_changed_at=now,
        )
        .returning(u.id)
    ).scalar_one()
    return StaffUser(int(new_id), company_id, address, checked, now, None)


def list_users(conn: Connection, company_id: int) -> list[StaffUser]:
    u = t.staff_users.c
    return [
        _user(row)
        for row in conn.execute(
            select(t.staff_users).where(u.company_id == company_id).order_by(u.email)
        )
    ]


def find_user(conn: Connection, company_id: int, email: str) -> StaffUser:
    u = t.staff_users.c
    address = normal_email(email)
    row = conn.execute(
        select(t.staff_users).where(u.company_id == company_id, u.email == address)
    ).first()
    if row is None:
        raise UserError(f"no user {address} in this company ('cobro users list')")
    return _user(row)


def end_sessions(conn: Connection, user_id: int) -> int:
    """End every session of the user; how many there were."""
    result = conn.execute(delete(t.staff_sessions).where(t.staff_sessions.c.user_id == user_id))
    return max(int(result.rowcount), 0)


def remove_user(conn: Connection, company_id: int, email: str) -> StaffUser:
    """Remove the user and end their sessions at once."""
    user = find_user(conn, company_id, email)
    end_sessions(conn, user.id)
    conn.execute(delete(t.staff_users).where(t.staff_users.c.id == user.id))
    return user


def set_password(
    conn: Connection, company_id: int, email: str, password: str, now: datetime
) -> StaffUser:
    """A new password for the user; their sessions end (a stolen one stops working)."""
    check_password(password)
    user = find_user(conn, company_id, email)
    conn.execute(
        update(t.staff_users)
        .where(t.staff_users.c.id == user.id)
        .values(password_hash=_hasher().hash(password), password_changed_at=now)
    )
    end_sessions(conn, user.id)
    return user


# A hash of no one's password, checked when no user has the email given, so that a login
# for an unknown address takes as long as one with a wrong password.
@cache
def _decoy() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def _cheaper(stored: str) -> bool:
    """Whether ``stored`` was made at less than today's cost (in one parameter at least,
    and at more in none): a hash is never made again at a lower cost."""
    try:
        made = extract_parameters(stored)
    except InvalidHashError:
        return False
    cost = password_cost()
    have = (made.time_cost, made.memory_cost, made.parallelism)
    want = (cost["time_cost"], cost["memory_cost"], cost["parallelism"])
    return have != want and all(h <= w for h, w in zip(have, want, strict=True))


def raise_hash_cost(engine: Engine, user_id: int, password: str) -> bool:
    """After a login with ``password``: the user's hash made again at today's cost when
    it was made at less (a cost raised since); whether it was. Checked and hashed outside
    any transaction, written only if the hash is still the one checked."""
    u = t.staff_users.c
    with engine.connect() as conn:
        stored = conn.execute(select(u.password_hash).where(u.id == user_id)).scalar_one_or_none()
    if stored is None or not _cheaper(str(stored)) or not _verifies(str(stored), password):
        return False
    made = _hasher().hash(password)
    with engine.begin() as conn:
        done = conn.execute(
            update(t.staff_users)
            .where(u.id == user_id, u.password_hash == str(stored))
            .values(password_hash=made)
        )
    return bool(done.rowcount)


def _verifies(stored: str, password: str) -> bool:
    try:
        return _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(
    conn: Connection, company_ids: Iterable[int], email: str, password: str
) -> list[StaffUser]:
    """The users of ``company_ids`` with this email whose password this is (one per
    company at most; none when it is wrong or no such user exists). The time it takes does
    not tell whether the email is known."""
    if len(password) > MAX_PASSWORD:
        return []
    try:
        address = normal_email(email)
    except UserError:
        address = None
    u = t.staff_users.c
    rows = (
        conn.execute(
            select(t.staff_users)
            .where(u.email == address, u.company_id.in_(list(company_ids)))
            .order_by(u.company_id)
        ).all()
        if address
        else []
    )
    if not rows:
        _verifies(_decoy(), password)
        return []
    return [_user(row) for row in rows if _verifies(str(row.password_hash), password)]


# ------------------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class Session:
    """A live session: its row, the user's current role, and its cookie's digest."""

    id: int
    user: StaffUser
    digest: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def start_session(
    conn: Connection,
    user: StaffUser,
    now: datetime,
    ip: str | None = None,
    user_agent: str | None = None,
) -> str:
    """A new session of ``user``: the token for the browser's cookie (kept only as a
    digest); the user's last login is now."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(t.staff_sessions).values(
            company_id=user.company_id,
            user_id=user.id,
            digest=token_digest(token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + SESSION_MAX,
            ip=ip,
            user_agent=user_agent[:500] if user_agent else None,
        )
    )
    conn.execute(
        update(t.staff_users).where(t.staff_users.c.id == user.id).values(last_login_at=now)
    )
    return token


def find_session(conn: Connection, token: str, now: datetime) -> Session | None:
    """The live session of ``token``, or None (unknown, ended, idle too long, expired)."""
    s, u = t.staff_sessions.c, t.staff_users.c
    row = conn.execute(
        select(
            s.id.label("session_id"),
            s.digest,
            s.created_at.label("started"),
            s.last_seen_at,
            s.expires_at,
            t.staff_users,
        )
        .join(t.staff_users, u.id == s.user_id)
        .where(s.digest == token_digest(token), s.company_id == u.company_id)
    ).first()
    if row is None or row.expires_at <= now or row.last_seen_at <= now - SESSION_IDLE:
        return None
    return Session(
        int(row.session_id),
        _user(row),
        str(row.digest),
        row.started,
        row.last_seen_at,
        row.expires_at,
    )


def seen(conn: Connection, session: Session, now: datetime) -> None:
    """Keep the session alive: its last activity is now (written every few minutes)."""
    if session.last_seen_at > now - SEEN_EVERY:
        return
    conn.execute(
        update(t.staff_sessions).where(t.staff_sessions.c.id == session.id).values(last_seen_at=now)
    )


def end_session(conn: Connection, token: str) -> None:
    conn.execute(delete(t.staff_sessions).where(t.staff_sessions.c.digest == token_digest(token)))


def forget_ended(conn: Connection, now: datetime) -> int:
    """Delete the rows of sessions that have ended; how many."""
    s = t.staff_sessions.c
    result = conn.execute(
        delete(t.staff_sessions).where(
            (s.expires_at <= now) | (s.last_seen_at <= now - SESSION_IDLE)
        )
    )
    return max(int(result.rowcount), 0)
