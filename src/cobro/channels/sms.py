"""SMS through Twilio's Messages API, with segment counting for length and cost."""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Awaitable, Mapping
from decimal import Decimal
from typing import Any, ClassVar

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from cobro.channels.base import Handovers, Outgoing
from cobro.errors import PermanentFailure, TemporaryFailure

TWILIO_ROOT = "https://api.twilio.com"

# GSM 03.38: the basic character set (one septet) and its extension table (two septets).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = frozenset("^{}\\[~]|€\f")
ELLIPSIS = "..."


def sms_units(text: str) -> tuple[str, int]:
    """(``"GSM-7"`` or ``"UCS-2"``, length in that encoding's units)."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENDED for ch in text):
        return "GSM-7", sum(2 if ch in GSM_EXTENDED else 1 for ch in text)
    return "UCS-2", len(text.encode("utf-16-le")) // 2


def sms_segments(text: str) -> int:
    """How many SMS segments ``text`` takes (what carriers bill)."""
    encoding, units = sms_units(text)
    single, multi = (160, 153) if encoding == "GSM-7" else (70, 67)
    if units <= single:
        return 1
    return -(-units // multi)


# Look-alikes outside GSM-7 that would make the whole message UCS-2 (70 characters a segment).
_LOOKALIKES = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\u00b7": "-",
    "ç": "Ç",
}


def smart_encode(text: str) -> str:
    """Replace characters GSM-7 lacks by their closest GSM-7 form (``ó`` -> ``o``), as SMS
    providers' "smart encoding" does; characters without one (emoji, Cyrillic) stay."""
    out: list[str] = []
    for ch in text:
        if ch in GSM_BASIC or ch in GSM_EXTENDED:
            out.append(ch)
        elif ch in _LOOKALIKES:
            out.append(_LOOKALIKES[ch])
        else:
            base = "".join(
                c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
            )
            out.append(base if base and all(c in GSM_BASIC for c in base) else ch)
    return "".join(out)


def fit_sms(text: str, link: str | None, max_segments: int, smart: bool = True) -> str:
    """``text`` and ``link`` in at most ``max_segments`` segments: the text is shortened, the
    link kept whole (a shortened link is useless)."""
    text = " ".join(text.split())
    if smart:
        text = smart_encode(text)
    tail = f" {link}" if link else ""
    body = text + tail
    if sms_segments(body) <= max_segments:
        return body
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that still fits
        mid = (lo + hi + 1) // 2
        if sms_segments(text[:mid].rstrip() + ELLIPSIS + tail) <= max_segments:
            lo = mid
        else:
            hi = mid - 1
    return (text[:lo].rstrip() + ELLIPSIS + tail).strip()


class _TwilioHttp(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's own async client, pointed at ``api_url`` (a regional edge or a test server)."""

    def __init__(self, api_url: str, timeout: float) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        self.api_url = api_url.rstrip("/")

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if url.startswith(TWILIO_ROOT):
            url = self.api_url + url[len(TWILIO_ROOT) :]
        if auth is not None:  # as a header: aiohttp's auth= argument is deprecated
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {token}"}
        response: Response = await super().request(
            method, url, params, data, headers, None, timeout or self.timeout, allow_redirects
        )
        return response


class TwilioClient:
    """A channel's client of Twilio's REST API at ``api_url``, opened on first use; a
    channel without an auth token refuses each message, naming where the token is read."""

    def __init__(
        self, account_sid: str, auth_token: str | None, api_url: str, timeout_s: float
    ) -> None:
        self.account_sid = account_sid
        self._token = auth_token
        self.api_url = api_url
        self.timeout_s = timeout_s
        self._http: _TwilioHttp | None = None
        self._client: Client | None = None

    async def start(self) -> None:
        if self._token and self._client is None:
            self._http = _TwilioHttp(self.api_url, self.timeout_s)
            self._client = Client(self.account_sid, self._token, http_client=self._http)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None

    async def client(self, unset: str) -> Client:
        """The client, opened if needed; ``PermanentFailure(unset)`` without a token."""
        if not self._token:
            raise PermanentFailure(unset)
        if self._client is None:
            await self.start()
        assert self._client is not None
        return self._client


# Twilio error codes that concern the recipient: another channel may still reach them.
RECIPIENT_CODES = {
    21211: "not a valid phone number",
    21408: "the destination region is not enabled",
    21610: "the recipient has opted out (STOP)",
    21612: "the destination cannot be reached from this sender",
    21614: "not a mobile number",
    30003: "unreachable handset",
    30004: "message blocked",
    30005: "unknown destination",
    30006: "landline or unreachable carrier",
}


class SmsChannel:
    """Sends ``Outgoing.text`` (with ``Outgoing.url`` appended) as one SMS per message."""

    name: ClassVar[str] = "sms"

    def __init__(
        self,
        account_sid: str,
        auth_token: str | None,
        sender: str,
        *,
        api_url: str = TWILIO_ROOT,
        status_callback: str | None = None,
        cost_per_segment: Decimal = Decimal("0.05"),
        max_segments: int = 3,
        smart_encoding: bool = True,
        timeout_s: float = 15.0,
        token_source: str = "the auth token",
    ) -> None:
        self.account_sid = account_sid
        self.sender = sender
        self.api_url = api_url
        self.status_callback = status_callback
        self.cost_per_segment = cost_per_segment
        self.max_segments = max_segments
        self.smart_encoding = smart_encoding
        self.timeout_s = timeout_s
        self.token_source = token_source
        self.twilio = TwilioClient(account_sid, auth_token, api_url, timeout_s)
        self.handovers = Handovers()

    @property
    def reports_back(self) -> bool:
        """Twilio reports each message's fate to the status callback, when there is one."""
        return bool(self.status_callback)

    def callback_url(self, message: Outgoing) -> str | None:
        """The status callback of ``message``: the configured URL with its delivery's
        reference, which finds the delivery even before its Twilio id was recorded."""
        if not self.status_callback:
            return None
        if not message.ref:
            return self.status_callback
        joiner = "&" if "?" in self.status_callback else "?"
        return f"{self.status_callback}{joiner}ref={message.ref}"

    def handover(self, message: Outgoing) -> bytes:
        """The text this channel hands over for ``message``."""
        return self.body(message).encode()

    def body(self, message: Outgoing) -> str:
        if message.raw is not None:  # a resend: the text first sent, as it was
            return message.raw.decode("utf-8")
        return fit_sms(message.text, message.url, self.max_segments, self.smart_encoding)

    def cost_of(self, message: Outgoing) -> Decimal:
        return self.cost_per_segment * sms_segments(self.body(message))

    async def start(self) -> None:
        await self.twilio.start()

    async def stop(self) -> None:
        await self.twilio.stop()

    async def send(self, message: Outgoing) -> str:
        client = await self.twilio.client(f"SMS is not set up: {self.token_source} is empty")
        args: dict[str, Any] = {"to": message.address, "body": self.body(message)}
        if self.sender.startswith("MG"):
            args["messaging_service_sid"] = self.sender
        else:
            args["from_"] = self.sender
        callback = self.callback_url(message)
        if callback:
            args["status_callback"] = callback
        self.handovers.keep(message, args["body"].encode())
        return await twilio_sid(
            client.messages.create_async(**args), RECIPIENT_CODES, "channels.sms"
        )


async def twilio_sid(
    request: Awaitable[Any], recipient_codes: Mapping[int, str], settings: str
) -> str:
    """The provider id (``twilio:SID``) of what a request to Twilio's API created, or the
    failure it is: permanent for the recipient's error codes (``recipient_codes``) and for
    refused credentials (``settings`` names where they are set), temporary otherwise."""
    try:
        made = await request
    except TwilioRestException as exc:
        code = exc.code if isinstance(exc.code, int) else 0
        what = f"Twilio {exc.status} ({code}): {exc.msg}"
        if code in recipient_codes:
            raise PermanentFailure(f"{what} — {recipient_codes[code]}") from exc
        if exc.status in (401, 403):
            raise PermanentFailure(
                f"{what} — check {settings}.account_sid and the auth token"
            ) from exc
        if exc.status == 429 or exc.status >= 500:
            raise TemporaryFailure(what) from exc
        raise PermanentFailure(what) from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise TemporaryFailure(f"Twilio unreachable: {type(exc).__name__}: {exc}") from exc
    except TwilioException as exc:
        raise TemporaryFailure(f"Twilio: {exc}") from exc
    return f"twilio:{made.sid}"
