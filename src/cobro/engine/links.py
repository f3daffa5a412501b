"""Signed portal links: the token a claim's pay link carries, made and read back.

A token is ``{"co": company, "cu": customer, "ob": outbox id}`` signed with the
workspace secret (itsdangerous, salt ``cobro.portal``) and stamped with the instant
it was issued. Reading one checks, in this order, that it is well formed and
untouched, that it names this company, and that it is younger than
``company.link_max_age_days``. Both ends take the time as an argument, so a dated
run stamps its links with its own instant and tests move the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from cobro.errors import CobroError

SALT = "cobro.portal"
MAX_TOKEN_LENGTH = 600  # a real token is about 100 characters


class LinkRefused(CobroError):
    """A portal link that cannot be honoured: ``invalid`` (malformed, tampered, another
    company's, or for nothing known) or ``expired``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class PortalLink:
    """What a valid token names, and when it was issued."""

    company: str  # the company's slug (``company.id`` in cobro.yaml)
    customer: str  # the debtor's external id
    outbox_id: int  # the claim that carried the link
    issued_at: datetime

    def expires_at(self, max_age_days: int) -> datetime:
        return self.issued_at + timedelta(days=max_age_days)


class _StampedAt(TimestampSigner):
    """A timestamp signer that stamps a given instant instead of reading the clock."""

    def __init__(self, *args: Any, stamp: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamp = stamp

    def get_timestamp(self) -> int:
        return self._stamp


def make_token(secret: str, company: str, customer: str, outbox_id: int, at: datetime) -> str:
    """The signed token of the link to ``outbox_id``'s page, issued at ``at``."""
    serializer = URLSafeTimedSerializer(
        secret,
        salt=SALT,
        signer=_StampedAt,
        signer_kwargs={"stamp": int(at.timestamp())},
    )
    return str(serializer.dumps({"co": company, "cu": customer, "ob": outbox_id}))


def link_url(base: str, token: str) -> str:
    """The link a message carries: the portal's base URL and the token."""
    return f"{base.rstrip('/')}/{token}"


@lru_cache(maxsize=4096)
def token_company(token: str) -> str | None:
    """The company a token says it is for, read WITHOUT checking its signature: only to
    choose whose secret checks it (``read_token``). Kept per token: a debtor's page is
    opened with the same token again and again."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        _, payload = URLSafeTimedSerializer("", salt=SALT).loads_unsafe(token)
    except Exception:  # a malformed token names no company
        return None
    company = payload.get("co") if isinstance(payload, dict) else None
    return company if isinstance(company, str) else None


def read_token(
    secret: str, token: str, company: str, now: datetime, max_age_days: int
) -> PortalLink:
    """The link ``token`` names, or ``LinkRefused``: ``invalid`` when it is malformed,
    altered or for another company, ``expired`` when older than ``max_age_days``."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LinkRefused("invalid", "malformed token")
    link = _signed_link(secret, token)
    if link.company != company:
        raise LinkRefused("invalid", "the token is for another company")
    if now >= link.expires_at(max_age_days):
        raise LinkRefused("expired", f"issued {link.issued_at.isoformat()}")
    return link


@lru_cache(maxsize=4096)
def _signed_link(secret: str, token: str) -> PortalLink:
    """What ``token`` names, its signature checked with ``secret`` (``LinkRefused`` when
    it is altered or names no claim). Kept per secret and token, valid ones only (an
    exception is not kept): the same link is read on every request of its page; its age
    is checked by the caller each time."""
    serializer = URLSafeTimedSerializer(secret, salt=SALT)
    try:
        payload, stamped = serializer.loads(token, return_timestamp=True)
    except BadSignature as exc:
        raise LinkRefused("invalid", f"bad signature: {exc}") from None
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("co"), str)
        and isinstance(payload.get("cu"), str)
        and isinstance(payload.get("ob"), int)
        and not isinstance(payload.get("ob"), bool)
    ):
        raise LinkRefused("invalid", "the token does not name a claim")
    return PortalLink(payload["co"], payload["cu"], payload["ob"], stamped.astimezone(UTC))
