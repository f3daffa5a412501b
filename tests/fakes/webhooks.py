"""A webhook receiver: an HTTP server on 127.0.0.1 that keeps every POST it gets.

``WebhookReceiver`` answers each request with the next status of ``answers`` (then
``default``), optionally with extra headers (a redirect's ``Location``), and can hold
requests unanswered until ``release()`` (a receiver that is slow, or a sender killed while
its post is on the wire). Tests check the signatures with the ``standardwebhooks`` package
(``Received.verify``), as a real receiver would.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook

from fakes.server import LocalHTTPServer, LocalService, QuietHandler


@dataclass
class Received:
    """One POST: path, headers (lower-case names), body, and the status it was answered
    (None: the sender was gone before the answer)."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def verify(self, secret: str) -> Any:
        """The payload, once its signature is checked with ``secret`` (raises
        ``WebhookVerificationError`` when it does not hold)."""
        return Webhook(secret).verify(self.body, self.headers)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Script:
    answers: list[int] = field(default_factory=list)
    default: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(QuietHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.fake.handle(self)


class _Server(LocalHTTPServer):
    fake: WebhookReceiver


def _peer_closed(handler: _Handler) -> bool:
    """Whether the client closed its connection (its process ended) while it waited."""
    try:
        return handler.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class WebhookReceiver(LocalService):
    """A webhook endpoint; ``received`` lists every POST in arrival order."""

    def __init__(self, answers: list[int] | None = None, default: int = 200) -> None:
        super().__init__()
        self.received: list[Received] = []
        self.script = _Script(list(answers or []), default)
        self.changed = threading.Condition()
        self._hold = 0  # requests still to be held
        self._release = threading.Event()

    def _new_server(self) -> _Server:
        return _Server(self, _Handler)

    def url(self, path: str = "/hooks") -> str:
        return self.origin + path

    def answer(self, *statuses: int, default: int | None = None, **headers: str) -> None:
        """Answer the next requests with ``statuses``, then ``default``; every answer
        carries ``headers`` (``Location="..."``)."""
        self.script.answers = list(statuses)
        if default is not None:
            self.script.default = default
        self.script.headers = dict(headers)

    def hold(self, n: int = 1) -> None:
        """Leave the next ``n`` requests unanswered until ``release()``."""
        self._hold = n
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def wait_for(self, n: int, timeout: float = 30) -> bool:
        """Wait until ``n`` requests have arrived (answered or held)."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.received) >= n, timeout)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.accepted]

    def handle(self, handler: _Handler) -> None:
        body = handler.read_body()
        item = Received(handler.path, {k.lower(): v for k, v in handler.headers.items()}, body)
        with self.changed:
            held = self._hold > 0
            if held:
                self._hold -= 1
            status = self.script.answers.pop(0) if self.script.answers else self.script.default
            self.received.append(item)
            self.changed.notify_all()
        if held:
            self._release.wait(60)
            if _peer_closed(handler):  # the sender is gone (killed, or gave up waiting)
                handler.close_connection = True
                return
        try:
            handler.send_response(status)
            for name, value in self.script.headers.items():
                handler.send_header(name, value)
            answer = b"ok" if 200 <= status < 300 else b"not now"
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
            handler.wfile.flush()
        except OSError:  # the sender is gone (killed, or gave up waiting)
            handler.close_connection = True
            return
        item.status = status
