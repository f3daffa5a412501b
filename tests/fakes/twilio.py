"""A local stand-in for Twilio's Programmable Messaging REST API (2010-04-01).

``FakeTwilio`` is an HTTP server on 127.0.0.1 that answers the requests the real ``twilio``
library (or any HTTP client) makes to send an SMS and to fetch it back, with the status
codes, error codes and JSON shapes Twilio documents:

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form fields ``To``, ``From`` or
  ``MessagingServiceSid``, ``Body``, optional ``StatusCallback``) -> 201 + Message resource
* ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}.json`` -> 200 + resource

Errors use Twilio's JSON error body ``{"code", "message", "more_info", "status"}``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypedDict
from urllib.parse import parse_qs, urlsplit

from fakes.server import LocalHTTPServer, LocalService, QuietHandler

API_VERSION = "2010-04-01"

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SEND = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages\.json$")
_FETCH = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages/([^/]+)\.json$")

# GSM 03.38 default alphabet (the escape code 0x1B is left out) and its extension table,
# whose characters take two septets (escape + character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

MAX_BODY_CHARS = 1600


class SentMessage(TypedDict):
    """One message Twilio accepted, as the fake records it."""

    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    num_segments: int
    status_callback: str | None


def _pack(units: list[int], single: int, per_segment: int) -> int:
    """Segments needed for characters of ``units`` code units each (a character never splits)."""
    if sum(units) <= single:
        return 1
    segments, used = 1, 0
    for size in units:
        if used + size > per_segment:
            segments += 1
            used = 0
        used += size
    return segments


def count_segments(body: str) -> int:
    """SMS segments for ``body``: GSM-7 (160, or 153 a part) when every character fits the GSM
    alphabet (extension characters count two), otherwise UCS-2 (70, or 67 a part) counted in
    UTF-16 code units."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body):
        return _pack([2 if c in GSM7_EXTENSION else 1 for c in body], 160, 153)
    return _pack([2 if ord(c) > 0xFFFF else 1 for c in body], 70, 67)


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class _Server(LocalHTTPServer):
    fake: FakeTwilio


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")

    def send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Twilio-Request-Id", _sid("RQ"))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class FakeTwilio(LocalService):
    """Twilio's Messages API on a local port: ``with FakeTwilio() as tw: ... tw.url``.

    ``refuse`` maps a ``To`` number to the ``(http status, Twilio error code, message)`` the
    API answers for it (for example ``(400, 21610, "Attempt to send to unsubscribed
    recipient")``); ``fail_next`` makes the next N requests answer 503 (error 20503).
    """

    def __init__(self, account_sid: str | None = None, auth_token: str | None = None) -> None:
        super().__init__()
        self.account_sid = account_sid or _sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.messages: list[SentMessage] = []
        self.refuse: dict[str, tuple[int, int, str]] = {}
        self.fail_next = 0
        self.requests = 0  # every request the server answered, failures included
        self._resources: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def _new_server(self) -> _Server:
        return _Server(self, _Handler)

    @property
    def url(self) -> str:
        """Base URL to use instead of ``https://api.twilio.com`` (no trailing slash)."""
        return self.origin

    # -- helpers for tests -------------------------------------------------------------------

    def resource(self, sid: str) -> dict[str, Any]:
        """The Message resource the API returns for ``sid`` (a copy)."""
        with self._lock:
            return dict(self._resources[sid])

    def set_status(
        self,
        sid: str,
        status: str,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> None:
        """Move a message on (``sent``, ``delivered``, ``undelivered``, ``failed``...), as a
        later ``GET`` of the message shows it."""
        with self._lock:
            res = self._resources[sid]
            res["status"] = status
            res["error_code"] = error_code
            res["error_message"] = error_message
            res["date_updated"] = format_datetime(datetime.now(UTC))
            if status in {"sent", "delivered"} and res["date_sent"] is None:
                res["date_sent"] = res["date_updated"]

    # -- protocol ----------------------------------------------------------------------------

    def _error(
        self,
        handler: _Handler,
        status: int,
        code: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        handler.send_json(status, payload, headers or {})

    def _authorized(self, handler: _Handler) -> bool:
        scheme, _, value = handler.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(sep) and (
            hmac.compare_digest(user.encode(), self.account_sid.encode())
            & hmac.compare_digest(password.encode(), self.auth_token.encode())
        )

    def _handle(self, handler: _Handler, method: str) -> None:
        raw = handler.read_body()
        path = urlsplit(handler.path).path
        with self._lock:
            self.requests += 1
            outage = self.fail_next > 0
            if outage:
                self.fail_next -= 1
        if outage:
            self._error(handler, 503, 20503, "Service unavailable", {"Retry-After": "1"})
            return
        if not self._authorized(handler):
            self._error(
                handler,
                401,
                20003,
                "Authenticate",
                {"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
            return
        send, fetch = _SEND.match(path), _FETCH.match(path)
        match = send if method == "POST" else fetch
        if match is None or match.group(1) != self.account_sid:
            self._error(handler, 404, 20404, f"The requested resource {path} was not found")
            return
        if method == "GET":
            with self._lock:
                found = self._resources.get(match.group(2))
                resource = dict(found) if found is not None else None
            if resource is None:
                self._error(handler, 404, 20404, f"The requested resource {path} was not found")
            else:
                handler.send_json(200, resource, {})
            return
        self._create(handler, raw)

    def _create(self, handler: _Handler, raw: bytes) -> None:
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)

        def field(name: str) -> str | None:
            values = form.get(name)
            return values[0] if values else None

        to, from_, service = field("To"), field("From") or None, field("MessagingServiceSid")
        body, callback = field("Body") or "", field("StatusCallback")
        service = service or None
        if not to:
            self._error(handler, 400, 21604, "A 'To' phone number is required.")
            return
        if not E164.match(to):
            self._error(handler, 400, 21211, f"The 'To' number {to} is not a valid phone number.")
            return
        if from_ is None and service is None:
            self._error(handler, 400, 21603, "A 'From' phone number is required.")
            return
        if not body:
            self._error(handler, 400, 21602, "Message body is required.")
            return
        if len(body) > MAX_BODY_CHARS:
            self._error(
                handler,
                400,
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            )
            return
        if callback and not re.match(r"^https?://[^\s/]+", callback):
            self._error(handler, 400, 21609, f"The StatusCallback URL {callback} is not valid.")
            return
        with self._lock:
            refusal = self.refuse.get(to)
        if refusal is not None:
            self._error(handler, *refusal)
            return

        sid = _sid("SM")
        segments = count_segments(body)
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # With only a Messaging Service, Twilio answers "accepted" and picks the sender later.
            "status": "queued" if from_ is not None else "accepted",
            "subresource_uris": {
                "media": f"{uri}/Media.json",
                "feedback": f"{uri}/Feedback.json",
            },
            "to": to,
            "uri": f"{uri}.json",
        }
        message: SentMessage = {
            "sid": sid,
            "to": to,
            "from_": from_,
            "messaging_service_sid": service,
            "body": body,
            "num_segments": segments,
            "status_callback": callback or None,
        }
        with self._lock:
            self._resources[sid] = resource
            self.messages.append(message)
        handler.send_json(201, resource, {})
