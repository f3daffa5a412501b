"""The webhook channel: signed JSON posted to a company's endpoints over HTTP (httpx).

A post is accepted when the endpoint answers 2xx; anything else (another status, no
connection, no answer within ``timeout_s``) is an attempt that failed and will be retried.
Redirects are never followed: the signed body goes only to the URL the company
registered. Only the first KB of an answer is read (its start goes into the error).
httpx is imported when the first post is made: a run without webhooks never loads it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from cobro.channels.base import Outgoing
from cobro.errors import TemporaryFailure

if TYPE_CHECKING:
    import httpx

TIMEOUT_S = 10.0  # the longest one post may take, connection included
MAX_ANSWER = 1024  # bytes of an answer read (for the error it goes into)
USER_AGENT = "Cobro-Webhooks"


@dataclass(frozen=True)
class Answer:
    """What one post came to: the HTTP status (None: no answer), the error (None: accepted)
    and how long it took."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def accepted(self) -> bool:
        return self.error is None


def _snippet(data: bytes) -> str:
    text = data[:200].decode("utf-8", errors="replace")
    return " ".join(text.split())


class WebhookChannel:
    """Posts signed webhook bodies; ``parallel`` posts at once."""

    name: ClassVar[str] = "webhook"

    def __init__(
        self,
        timeout_s: float = TIMEOUT_S,
        parallel: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.parallel = parallel
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def cost_of(self, message: Outgoing) -> Decimal:
        return Decimal(0)

    async def start(self) -> None:
        """Nothing to open until the first post."""

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s),
                follow_redirects=False,
                transport=self._transport,
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST ``body`` (JSON) to ``url`` with ``headers`` (the signature); never raises
        for what the endpoint or the network does."""
        import httpx

        client = self._http()
        began = time.monotonic()

        def took() -> int:
            return round((time.monotonic() - began) * 1000)

        try:
            async with asyncio.timeout(self.timeout_s):
                async with client.stream(
                    "POST",
                    url,
                    content=body,
                    headers={**headers, "Content-Type": "application/json"},
                ) as response:
                    answer = b""
                    async for part in response.aiter_bytes():
                        answer += part
                        if len(answer) >= MAX_ANSWER:
                            break
        except TimeoutError:
            return Answer(None, f"no answer within {self.timeout_s:g} s", took())
        except httpx.TimeoutException:
            return Answer(None, f"no answer within {self.timeout_s:g} s", took())
        except httpx.HTTPError as exc:
            why = str(exc) or type(exc).__name__
            return Answer(None, f"cannot post: {why}"[:1000], took())
        status = response.status_code
        if 200 <= status < 300:
            return Answer(status, None, took())
        if 300 <= status < 400:
            where = response.headers.get("Location", "")
            return Answer(
                status,
                f"HTTP {status}: redirect to {where or '?'} not followed"[:1000],
                took(),
            )
        text = _snippet(answer)
        return Answer(status, f"HTTP {status}" + (f": {text}" if text else ""), took())

    async def send(self, message: Outgoing) -> str:
        """The channel port (``cobro.channels.base.Channel``): ``message.text`` posted to
        ``message.address`` with ``message.headers``."""
        answer = await self.post(message.address, message.text.encode(), message.headers)
        if not answer.accepted:
            raise TemporaryFailure(answer.error or "not accepted")
        return f"HTTP {answer.status_code}"
