"""A local stand-in for Twilio's Programmable Messaging REST API (2010-04-01).

``FakeTwilio`` is an HTTP server on 127.0.0.1 that answers the requests the real ``twilio``
library (or any HTTP client) makes to send an SMS and to fetch it back, with the status
codes, error codes and JSON shapes Twilio documents:

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form fields ``To``, ``From`` or
  ``MessagingServiceSid``, ``Body``, optional ``StatusCallback``) -> 201 + Message resource
* ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}.json`` -> 200 + resource

Errors use Twilio's JSON error body ``{"code", "message", "more_info", "status"}``.

Like Twilio, it reports back: a message created with a ``StatusCallback`` gets its status
callbacks (``sent``, then the outcome ``outcomes`` gives its number: ``delivered``,
``undelivered`` or ``failed`` with an error code) as form POSTs signed with
``X-Twilio-Signature`` exactly as Twilio signs them (HMAC-SHA1 of the URL followed by
each parameter's name and value in name order, keyed with the auth token, base64). They
are queued until the test sends them (``send_callbacks``), or sent as soon as the
message is created with ``auto_callbacks``; ``reply`` posts an inbound SMS (a debtor's
STOP) to a messaging webhook the same way.

It also speaks the Programmable Voice Calls API:

* ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (``To``, ``From``, ``Url`` or
  ``Twiml``, ``StatusCallback``, ``StatusCallbackEvent``, ``MachineDetection``...) -> 201 +
  Call resource
* ``GET /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` -> 200 + resource

``call_outcomes`` gives each number's outcome (``answered``: a person listens and hangs
up; ``press``: a person presses 1; ``machine``: an answering machine; ``busy``;
``no-answer``; ``failed``). ``play_calls`` then plays every call made since: as Twilio
does, it fetches the call's TwiML from its ``Url`` (a signed POST with ``CallSid``,
``AnsweredBy``...), follows a ``<Gather>``'s action with the key pressed, and posts the
status callbacks (``initiated``, ``ringing``, ``in-progress``, then the final
``completed`` with ``AnsweredBy`` and ``CallDuration``, or ``busy``, ``no-answer``,
``failed``), all signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypedDict
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import Request, urlopen

from fakes.server import LocalHTTPServer, LocalService, QuietHandler

API_VERSION = "2010-04-01"

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SEND = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages\.json$")
_FETCH = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages/([^/]+)\.json$")
_CALL = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Calls\.json$")
_CALL_FETCH = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Calls/([^/]+)\.json$")
_SAY = re.compile(r"<Say\b[^>]*>(.*?)</Say>", re.S)
_GATHER = re.compile(r'<Gather\b[^>]*\baction="([^"]+)"')
CALL_OUTCOMES = frozenset({"answered", "press", "machine", "busy", "no-answer", "failed"})

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


def _said(twiml: str) -> list[str]:
    """The text of every ``<Say>`` of ``twiml``, in order."""
    return [html.unescape(text) for text in _SAY.findall(twiml)]


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """``X-Twilio-Signature`` of a POST of ``params`` to ``url``: HMAC-SHA1 keyed with the
    auth token over the URL, then every parameter name and its value, sorted by name;
    base64-encoded (Twilio's documented scheme)."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# What each outcome reports after ``sent``: (MessageStatus, ErrorCode).
OUTCOMES: dict[str, tuple[str, int | None]] = {
    "delivered": ("delivered", None),
    "undelivered": ("undelivered", 30005),  # unknown destination handset
    "unreachable": ("undelivered", 30003),  # handset off: may work later
    "failed": ("failed", 30008),  # unknown error
}


class Callback(TypedDict):
    """A status callback the fake sent (or is to send)."""

    url: str
    params: dict[str, str]
    signature: str
    answer: int | None  # the HTTP status the receiver answered; None: not sent yet


class MadeCall(TypedDict):
    """One call Twilio accepted, and what happened once it was played."""

    sid: str
    to: str
    from_: str
    url: str | None
    method: str | None  # how the TwiML is fetched (``Method``; Twilio's default: POST)
    twiml: str | None
    status_callback: str | None
    status_callback_method: str | None
    events: list[str]
    machine_detection: str | None
    timeout: int
    played: bool
    outcome: str | None
    heard: list[str]  # what the callee heard (every <Say>), in order
    answers: list[int]  # the HTTP status of each request the call made to the app


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
    recipient")``); ``landlines`` holds numbers that take calls but no SMS (a message to
    one answers 400, error 21614, as Twilio answers for a number that is not a mobile);
    ``fail_next`` makes the next N requests answer 503 (error 20503).
    """

    def __init__(self, account_sid: str | None = None, auth_token: str | None = None) -> None:
        super().__init__()
        self.account_sid = account_sid or _sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.messages: list[SentMessage] = []
        self.refuse: dict[str, tuple[int, int, str]] = {}
        self.landlines: set[str] = set()
        self.fail_next = 0
        self.requests = 0  # every request the server answered, failures included
        # Number -> outcome reported after "sent" ("delivered", "undelivered",
        # "unreachable", "failed"); numbers not listed get ``default_outcome``.
        self.outcomes: dict[str, str] = {}
        self.default_outcome = "delivered"
        self.auto_callbacks = False  # send callbacks as soon as a message is created
        self.callbacks: list[Callback] = []  # sent and pending, in order
        self.calls: list[MadeCall] = []
        self.call_outcomes: dict[str, str] = {}  # number -> outcome; default: answered
        # Called with the number of calls so far once a call is taken, before the answer
        # is written (a test kills the dispatcher there).
        self.on_call: Callable[[int], None] | None = None
        # Called with the number of messages so far once a message is taken, before the
        # answer is written (a test kills the sender there).
        self.on_message: Callable[[int], None] | None = None
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

    def send_callbacks(self) -> list[Callback]:
        """POST every pending status callback, in order, signed; returns them with the
        answers they got."""
        with self._lock:
            pending = [c for c in self.callbacks if c["answer"] is None]
        for callback in pending:
            callback["answer"] = self.post_signed(callback["url"], callback["params"])
        return pending

    def post_signed(self, url: str, params: dict[str, str], signature: str | None = None) -> int:
        """POST ``params`` as a form to ``url`` with Twilio's signature (or the one
        given, to test a wrong one; "" for none); the HTTP status of the answer."""
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        if signature is None:
            signature = twilio_signature(self.auth_token, url, params)
        if signature:
            headers["X-Twilio-Signature"] = signature
        request = Request(url, data=urlencode(params).encode(), headers=headers, method="POST")
        try:
            with urlopen(request, timeout=30) as answer:
                return int(answer.status)
        except HTTPError as exc:
            return int(exc.code)
        except URLError:
            return 0  # nobody listening: Twilio would retry later

    def reply(
        self,
        from_: str,
        body: str,
        url: str,
        to: str | None = None,
        *,
        signature_ok: bool = True,
    ) -> int:
        """A debtor's SMS to the company's number, posted to the messaging webhook
        ``url`` as Twilio does (signed); the HTTP status of the answer."""
        params = {
            "ToCountry": "ES",
            "SmsMessageSid": (sid := _sid("SM")),
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": to or "+34910000000",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }
        forged = None if signature_ok else twilio_signature("not-the-token", url, params)
        return self.post_signed(url, params, forged)

    def _queue_callbacks(self, resource: dict[str, Any], url: str) -> list[Callback]:
        outcome = self.outcomes.get(resource["to"], self.default_outcome)
        final, code = OUTCOMES[outcome]
        queued: list[Callback] = []
        for status, error in (("sent", None), (final, code)):
            params = {
                "SmsSid": resource["sid"],
                "SmsStatus": status,
                "MessageStatus": status,
                "To": resource["to"],
                "MessageSid": resource["sid"],
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
            }
            if resource["from"]:
                params["From"] = resource["from"]
            if resource["messaging_service_sid"]:
                params["MessagingServiceSid"] = resource["messaging_service_sid"]
            if error is not None:
                params["ErrorCode"] = str(error)
            queued.append(
                {
                    "url": url,
                    "params": params,
                    "signature": twilio_signature(self.auth_token, url, params),
                    "answer": None,
                }
            )
        with self._lock:
            self.callbacks.extend(queued)
        return queued

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
        call, call_fetch = _CALL.match(path), _CALL_FETCH.match(path)
        if call or call_fetch:
            found = call if method == "POST" else call_fetch
            if found is None or found.group(1) != self.account_sid:
                self._error(handler, 404, 20404, f"The requested resource {path} was not found")
            elif method == "POST":
                self._create_call(handler, raw)
            else:
                with self._lock:
                    res = self._resources.get(found.group(2))
                    copy = dict(res) if res is not None else None
                if copy is None:
                    self._error(handler, 404, 20404, f"The requested resource {path} was not found")
                else:
                    handler.send_json(200, copy, {})
            return
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
            if refusal is None and to in self.landlines:
                refusal = (400, 21614, f"'To' number {to} is not a valid mobile number")
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
        queued = self._queue_callbacks(resource, callback) if callback else []
        if self.on_message is not None:
            self.on_message(len(self.messages))
        handler.send_json(201, resource, {})
        if self.auto_callbacks:
            for each in queued:
                each["answer"] = self.post_signed(each["url"], each["params"])

    # -- calls ---------------------------------------------------------------------------

    def _create_call(self, handler: _Handler, raw: bytes) -> None:
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)

        def field(name: str) -> str | None:
            values = form.get(name)
            return values[0] if values and values[0] else None

        to, from_ = field("To"), field("From")
        url, twiml, callback = field("Url"), field("Twiml"), field("StatusCallback")
        if not to:
            self._error(handler, 400, 21201, "No 'To' number is specified")
            return
        if not E164.match(to):
            self._error(handler, 400, 21211, f"Invalid 'To' Phone Number: {to}")
            return
        if not from_:
            self._error(handler, 400, 21213, "No 'From' number is specified")
            return
        if not E164.match(from_):
            self._error(handler, 400, 21212, f"Invalid 'From' Phone Number: {from_}")
            return
        if not url and not twiml:
            self._error(handler, 400, 21205, "Url parameter is required.")
            return
        for name, value in (("Url", url), ("StatusCallback", callback)):
            if value and not re.match(r"^https?://[^\s/]+", value):
                self._error(handler, 400, 21205, f"{name} is not a valid URL: {value}")
                return
        with self._lock:
            refusal = self.refuse.get(to)
        if refusal is not None:
            self._error(handler, *refusal)
            return
        sid = _sid("CA")
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}"
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": from_,
            "from_formatted": from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": _sid("PN"),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "subresource_uris": {"recordings": f"{uri}/Recordings.json"},
            "to": to,
            "to_formatted": to,
            "trunk_sid": None,
            "uri": f"{uri}.json",
            "queue_time": "0",
        }
        made: MadeCall = {
            "sid": sid,
            "to": to,
            "from_": from_,
            "url": url,
            "method": field("Method"),
            "twiml": twiml,
            "status_callback": callback,
            "status_callback_method": field("StatusCallbackMethod"),
            "events": form.get("StatusCallbackEvent", []),
            "machine_detection": field("MachineDetection"),
            "timeout": int(field("Timeout") or 60),
            "played": False,
            "outcome": None,
            "heard": [],
            "answers": [],
        }
        with self._lock:
            self._resources[sid] = resource
            self.calls.append(made)
        if self.on_call is not None:
            self.on_call(len(self.calls))
        handler.send_json(201, resource, {})

    def post_form(self, url: str, params: dict[str, str]) -> tuple[int, str]:
        """POST ``params`` to ``url`` signed as Twilio signs; (HTTP status, body)."""
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "X-Twilio-Signature": twilio_signature(self.auth_token, url, params),
        }
        request = Request(url, data=urlencode(params).encode(), headers=headers, method="POST")
        try:
            with urlopen(request, timeout=30) as answer:
                return int(answer.status), answer.read().decode("utf-8")
        except HTTPError as exc:
            return int(exc.code), ""
        except URLError:
            return 0, ""

    def play_calls(self) -> list[MadeCall]:
        """Play every call not played yet, by its number's outcome (see the module)."""
        with self._lock:
            pending = [c for c in self.calls if not c["played"]]
        for call in pending:
            self._play(call)
        return pending

    def _play(self, call: MadeCall) -> None:
        outcome = self.call_outcomes.get(call["to"], "answered")
        if outcome not in CALL_OUTCOMES:
            raise ValueError(f"unknown call outcome {outcome!r}")
        call["played"], call["outcome"] = True, outcome
        base = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call["sid"],
            "Called": call["to"],
            "Caller": call["from_"],
            "Direction": "outbound-api",
            "From": call["from_"],
            "To": call["to"],
        }

        def report(event: str, status: str, extra: dict[str, str] | None = None) -> None:
            if call["status_callback"] and (event in call["events"] or status == "completed"):
                params = {**base, "CallStatus": status, **(extra or {})}
                params["Timestamp"] = format_datetime(datetime.now(UTC))
                params["SequenceNumber"] = str(len(call["answers"]))
                code, _ = self.post_form(call["status_callback"], params)
                call["answers"].append(code)

        def finish(status: str, extra: dict[str, str] | None = None) -> None:
            with self._lock:
                res = self._resources[call["sid"]]
                res["status"] = status
                res["date_updated"] = format_datetime(datetime.now(UTC))
                if extra and "AnsweredBy" in extra:
                    res["answered_by"] = extra["AnsweredBy"]
                if extra and "CallDuration" in extra:
                    res["duration"] = extra["CallDuration"]

        report("initiated", "initiated")
        report("ringing", "ringing")
        if outcome in ("busy", "no-answer", "failed"):
            finish(outcome)
            report("completed", outcome, {"CallDuration": "0"})
            return
        by: dict[str, str] = {}
        if call["machine_detection"]:
            by["AnsweredBy"] = "human"
            if outcome == "machine":  # with DetectMessageEnd, Twilio waits for the beep
                end = call["machine_detection"] == "DetectMessageEnd"
                by["AnsweredBy"] = "machine_end_beep" if end else "machine_start"
        twiml = call["twiml"] or ""
        if call["url"]:
            code, twiml = self.post_form(call["url"], {**base, "CallStatus": "in-progress", **by})
            call["answers"].append(code)
        report("answered", "in-progress", by)
        gather = _GATHER.search(twiml)
        if gather is not None and outcome == "press":
            # The key is pressed while the <Gather> plays; Twilio then follows its action
            # and what comes after the <Gather> is never played.
            call["heard"].extend(_said(twiml.partition("</Gather>")[0]))
            action = html.unescape(gather.group(1))
            params = {**base, "CallStatus": "in-progress", "Digits": "1", **by}
            code, answer = self.post_form(action, params)
            call["answers"].append(code)
            call["heard"].extend(_said(answer))
        else:
            call["heard"].extend(_said(twiml))
        done = {**by, "CallDuration": "21" if call["heard"] else "2"}
        finish("completed", done)
        report("completed", "completed", done)
