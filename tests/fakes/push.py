"""A local Web Push service (RFC 8030) that checks VAPID (RFC 8292) and takes RFC 8291 payloads.

``FakePushService`` plays the push service a browser subscribes with: the application server
POSTs encrypted messages to ``{url}/push/{name}``. ``BrowserSubscription`` plays the browser:
it owns the subscription keys and decrypts what the service received, so a test can check the
exact bytes an application server sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from fakes.server import LocalHTTPServer, LocalService, QuietHandler

MAX_BODY = 4096  # RFC 8030 section 7.2: services must take at least 4096 octets
MAX_VAPID_LIFETIME = 24 * 60 * 60  # RFC 8292 section 2: exp at most 24 hours ahead
URGENCIES = ("very-low", "low", "normal", "high")  # RFC 8030 section 5.3
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # RFC 8030 section 5.4
_PUSH = re.compile(r"^/push/([^/]+)$")


def b64url(data: bytes) -> str:
    """Base64url without padding, as Web Push keys and JWTs are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_raw(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def vapid_keypair() -> tuple[str, str]:
    """A new VAPID key pair: (private key as PEM text, public key as base64url).

    The public key is the ``applicationServerKey`` a page passes to ``pushManager.subscribe``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return pem, b64url(_public_raw(key))


@dataclass(frozen=True)
class PushReceived:
    """One push message the service accepted."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    ttl: int
    urgency: str | None
    topic: str | None
    message_id: str = ""  # the <uuid> of the Location the service answered


class _Refused(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class _Server(LocalHTTPServer):
    fake: FakePushService


class _Handler(QuietHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


class FakePushService(LocalService):
    """A Web Push service on a local port: ``with FakePushService() as push: ...``.

    ``gone`` holds endpoint paths (``"/push/<name>"``) whose subscription expired: they answer
    410 Gone. ``fail_next`` makes the next N requests answer 503 with ``Retry-After``.
    ``restricted`` maps an endpoint path to the applicationServerKey the subscription was made
    with; a message signed with another VAPID key is refused 403 (RFC 8292 section 4.3).
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: list[PushReceived] = []
        self.gone: set[str] = set()
        self.fail_next = 0
        self.retry_after = 120
        self.restricted: dict[str, str] = {}
        self.requests = 0  # every request the server answered, failures included
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def _new_server(self) -> _Server:
        return _Server(self, _Handler)

    @property
    def url(self) -> str:
        """The service's origin, ``http://127.0.0.1:PORT`` (the VAPID ``aud``)."""
        return self.origin

    def endpoint(self, name: str) -> str:
        """The push endpoint URL of subscription ``name``."""
        return f"{self.url}/push/{name}"

    def messages_for(self, name: str) -> list[PushReceived]:
        """What subscription ``name`` received, oldest first."""
        path = f"/push/{name}"
        with self._lock:
            return [r for r in self.received if r.path == path]

    # -- protocol ----------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        body = handler.read_body()
        path = urlsplit(handler.path).path
        headers = {name.lower(): value for name, value in handler.headers.items()}
        try:
            received = self._accept(path, headers, body)
        except _Refused as refused:
            payload = json.dumps(
                {"code": refused.status, "error": refused.reason, "message": refused.reason}
            ).encode()
            handler.answer(refused.status, refused.headers, payload)
            return
        handler.answer(
            201, {"Location": f"/message/{received.message_id}", "TTL": str(received.ttl)}
        )

    def _accept(self, path: str, headers: dict[str, str], body: bytes) -> PushReceived:
        with self._lock:
            self.requests += 1
            outage = self.fail_next > 0
            if outage:
                self.fail_next -= 1
            restricted_key = self.restricted.get(path)
            gone = path in self.gone
        if outage:
            raise _Refused(503, "Service Unavailable", {"Retry-After": str(self.retry_after)})
        match = _PUSH.match(path)
        if match is None:
            raise _Refused(404, "Not Found")
        self._check_vapid(headers.get("authorization"), restricted_key)
        ttl_text = headers.get("ttl", "").strip()
        if not ttl_text.isdigit():
            raise _Refused(400, "a TTL header with a non-negative integer is required")
        urgency = headers.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise _Refused(400, f"Urgency must be one of {', '.join(URGENCIES)}")
        topic = headers.get("topic")
        if topic is not None and not _TOPIC.match(topic):
            raise _Refused(400, "Topic is up to 32 characters of the base64url alphabet")
        if body or "content-encoding" in headers:
            if headers.get("content-encoding", "").lower() != "aes128gcm":
                raise _Refused(400, "Content-Encoding must be aes128gcm (RFC 8291)")
            if len(body) > MAX_BODY:
                raise _Refused(413, f"the payload exceeds {MAX_BODY} octets")
            _check_aes128gcm(body)
        if gone:
            raise _Refused(410, "Gone: the subscription expired or was unsubscribed")
        received = PushReceived(
            path=path,
            headers=headers,
            body=body,
            ttl=int(ttl_text),
            urgency=urgency,
            topic=topic,
            message_id=str(uuid.uuid4()),
        )
        with self._lock:
            self.received.append(received)
        return received

    def _check_vapid(self, authorization: str | None, restricted_key: str | None) -> None:
        """RFC 8292: ``Authorization: vapid t=<ES256 JWT>, k=<public key>``."""
        if not authorization:
            raise _Refused(401, "Unauthorized: a VAPID Authorization header is required")
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "vapid":
            raise _Refused(403, "Forbidden: the Authorization scheme must be vapid (RFC 8292)")
        params: dict[str, str] = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                params[name.strip().lower()] = value.strip().rstrip("=")
        token, key_text = params.get("t"), params.get("k")
        if not token or not key_text:
            raise _Refused(403, "Forbidden: the vapid Authorization needs t= and k=")
        try:
            key_raw = b64url_decode(key_text)
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_raw)
            header_b64, claims_b64, signature_b64 = token.split(".")
            header = json.loads(b64url_decode(header_b64))
            claims = json.loads(b64url_decode(claims_b64))
            signature = b64url_decode(signature_b64)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _Refused(403, "Forbidden: malformed VAPID token or key") from None
        if not isinstance(header, dict) or header.get("alg") != "ES256":
            raise _Refused(403, "Forbidden: the VAPID token must be signed with ES256")
        if len(key_raw) != 65 or len(signature) != 64 or not isinstance(claims, dict):
            raise _Refused(403, "Forbidden: malformed VAPID token or key")
        r, s = (int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            key.verify(
                encode_dss_signature(r, s),
                f"{header_b64}.{claims_b64}".encode("ascii"),
                ec.ECDSA(hashes.SHA256()),
            )
        except InvalidSignature:
            raise _Refused(403, "Forbidden: the VAPID signature does not verify") from None
        if claims.get("aud") != self.url:
            raise _Refused(403, f"Forbidden: the VAPID aud must be {self.url}")
        exp, now = claims.get("exp"), time.time()
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= now:
            raise _Refused(403, "Forbidden: the VAPID token expired")
        if exp > now + MAX_VAPID_LIFETIME:
            raise _Refused(403, "Forbidden: the VAPID exp is more than 24 hours ahead")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
            raise _Refused(403, "Forbidden: the VAPID sub must be a mailto: or https: URL")
        if restricted_key is not None and b64url_decode(restricted_key) != key_raw:
            raise _Refused(403, "Forbidden: the VAPID key is not the subscription's key")


def _check_aes128gcm(body: bytes) -> None:
    """RFC 8188 header as RFC 8291 uses it: salt(16) rs(4) idlen(1)=65 keyid=sender's key."""
    if len(body) < 21 + 65 + 17:
        raise _Refused(400, "the body is not an aes128gcm message (too short)")
    (rs,) = struct.unpack(">I", body[16:20])
    if rs < 18 or body[20] != 65 or body[21] != 0x04:
        raise _Refused(400, "the aes128gcm header must carry the sender's P-256 key (RFC 8291)")


@dataclass
class BrowserSubscription:
    """The user agent's side of a push subscription (what ``PushManager.subscribe`` makes)."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.info = {
            "endpoint": self.endpoint,
            "keys": {
                "p256dh": b64url(_public_raw(self.private_key)),
                "auth": b64url(self.auth_secret),
            },
        }

    @classmethod
    def create(
        cls,
        service: FakePushService,
        name: str,
        application_server_key: str | None = None,
    ) -> BrowserSubscription:
        """Subscribe at ``service`` as ``name``; with ``application_server_key`` (base64url,
        as ``vapid_keypair`` returns it) the service only takes messages signed with that key."""
        sub = cls(service.endpoint(name), ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        if application_server_key is not None:
            with service._lock:
                service.restricted[sub.path] = application_server_key
        return sub

    @property
    def path(self) -> str:
        return urlsplit(self.endpoint).path

    def decrypt(self, received: PushReceived) -> bytes:
        """The plaintext of a message sent to this subscription (RFC 8291, aes128gcm)."""
        plain: bytes = http_ece.decrypt(
            received.body,
            private_key=self.private_key,
            auth_secret=self.auth_secret,
            version="aes128gcm",
        )
        return plain
