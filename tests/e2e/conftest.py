"""End-to-end fixtures: a real SMTP server (aiosmtpd) on a free local port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from typing import Any, TypeVar

import pytest

from local_smtp import LocalSMTP


class Inbox:
    """Every message the SMTP server accepted, parsed; ``wait_for`` waits for a count."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = BytesParser(policy=default).parsebytes(envelope.original_content or envelope.content)
        assert isinstance(msg, EmailMessage)
        with self.changed:
            self.messages.append(msg)
            self.changed.notify_all()
        return "250 OK"

    def wait_for(self, n: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.messages) >= n, timeout)


H = TypeVar("H")


@contextmanager
def smtp_server(handler: H) -> Iterator[tuple[H, int]]:
    """An aiosmtpd server with ``handler`` on a free port of 127.0.0.1, while in use."""
    controller = LocalSMTP(handler)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server(Inbox()) as served:
        yield served
