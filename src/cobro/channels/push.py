"""Web Push (RFC 8030, payload encryption RFC 8291, VAPID RFC 8292) through pywebpush."""

from __future__ import annotations

import base64
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from cobro.channels.base import Handovers, Outgoing
from cobro.errors import AddressGone, PermanentFailure, TemporaryFailure

# Push services accept 4096 bytes of encrypted record; keep the clear payload well below.
MAX_PAYLOAD = 3000


def new_vapid_keys() -> tuple[str, str]:
    """A new VAPID key pair: (private key PEM, public key as the browser's
    ``applicationServerKey``, base64url)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, public_key_of(pem)


def public_key_of(private_pem: str) -> str:
    """The ``applicationServerKey`` (base64url, uncompressed point) of a VAPID private key."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("a VAPID key is a P-256 (prime256v1) elliptic-curve key")
    raw = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def read_private_key(env_name: str, path: Path) -> str:
    """The VAPID private key (PEM): from the environment variable when set, else the file.
    ``ValueError`` says why there is none."""
    from_env = os.environ.get(env_name)
    if from_env:
        return from_env
    try:
        return path.read_text()
    except OSError as exc:
        raise ValueError(
            f"{env_name} is not set and {path} cannot be read ({exc.strerror}); "
            "`cobro push keys` makes one"
        ) from None


def payload(message: Outgoing) -> bytes:
    """The JSON a service worker shows: title, body, the link to open and a tag (a resend:
    the JSON first sent, as it was)."""
    if message.raw is not None:
        return message.raw
    body = message.text.strip()
    data: dict[str, Any] = {
        "title": message.subject,
        "body": body,
        "url": message.url,
        "tag": message.message_id,
    }
    raw = json.dumps(data, ensure_ascii=False).encode()
    while len(raw) > MAX_PAYLOAD and body:
        body = body[: max(len(body) - (len(raw) - MAX_PAYLOAD) - 3, 0)].rstrip()
        data["body"] = body + "..."
        raw = json.dumps(data, ensure_ascii=False).encode()
    return raw


class PushChannel:
    """Sends to one push subscription: ``address`` is its endpoint, ``meta`` its keys."""

    name: ClassVar[str] = "push"

    def __init__(
        self,
        private_key_pem: str | None,
        subject: str,
        *,
        ttl_s: int = 86400,
        urgency: str = "normal",
        cost: Decimal = Decimal(0),
        timeout_s: float = 15.0,
        key_problem: str = "no VAPID private key",
    ) -> None:
        self.subject = subject
        self.ttl_s = ttl_s
        self.urgency = urgency
        self.cost = cost
        self.timeout_s = timeout_s
        self.key_problem = key_problem
        self._vapid: Vapid | None = None
        if private_key_pem:
            try:
                self._vapid = Vapid.from_pem(private_key_pem.encode())
            except Exception as exc:  # py_vapid raises several types for a bad key
                self.key_problem = f"the VAPID private key cannot be read: {exc}"
        self._session: aiohttp.ClientSession | None = None
        self.handovers = Handovers()

    def cost_of(self, message: Outgoing) -> Decimal:
        return self.cost

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None

    async def send(self, message: Outgoing) -> str:
        if self._vapid is None:
            raise PermanentFailure(f"push is not set up: {self.key_problem}")
        p256dh, auth = message.meta.get("p256dh"), message.meta.get("auth")
        if not p256dh or not auth:
            raise AddressGone("the push subscription has no keys")
        if self._session is None:
            await self.start()
        data = payload(message)
        self.handovers.keep(message, data)  # the clear payload, before encryption
        try:
            response = await webpush_async(
                {"endpoint": message.address, "keys": {"p256dh": p256dh, "auth": auth}},
                data.decode(),
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self.subject},  # a new dict: aud and exp are added to it
                ttl=self.ttl_s,
                headers={"Urgency": self.urgency},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                aiohttp_session=self._session,
            )
        except WebPushException as exc:
            raise _failure(exc) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TemporaryFailure(f"push service unreachable: {type(exc).__name__}") from exc
        except (ValueError, TypeError) as exc:  # malformed keys in the subscription
            raise AddressGone(f"the push subscription is not usable: {exc}") from exc
        location = getattr(response, "headers", {}).get("Location", "")
        return f"push:{location or getattr(response, 'status', 201)}"


def _failure(exc: WebPushException) -> TemporaryFailure | PermanentFailure:
    status = exc.status_code or 0
    what = f"push service answered {status}"
    if status in (404, 410):
        return AddressGone(f"{what}: the subscription has expired or was removed")
    if status == 429 or status >= 500:
        return TemporaryFailure(what)
    if status in (401, 403):
        return PermanentFailure(f"{what}: VAPID authorization refused (check channels.push)")
    if status == 413:
        return PermanentFailure(f"{what}: payload too large")
    return PermanentFailure(what)
