"""A real SMTP server (aiosmtpd) on 127.0.0.1, on a port it holds from the start.

Asking the system for a free port, closing it and handing the number to the server leaves
a moment in which another process (another pytest-xdist worker, say) can take that port.
``LocalSMTP`` binds its socket first and serves on that very socket, so the port is its
own from the moment ``port`` is known.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from typing import Any

from aiosmtpd.controller import Controller


def bound_socket() -> socket.socket:
    """A socket bound to a port of 127.0.0.1 the system picked: for ``LocalSMTP(handler,
    sock)`` when the port must be known before the server's handler can be made."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class LocalSMTP(Controller):
    """``Controller(handler)`` on 127.0.0.1 at a port the system picked (or on ``sock``,
    from ``bound_socket()``); ``start()`` once."""

    def __init__(self, handler: Any, sock: socket.socket | None = None, **kwargs: Any) -> None:
        self._listening = sock or bound_socket()
        port = int(self._listening.getsockname()[1])
        super().__init__(handler, hostname="127.0.0.1", port=port, **kwargs)

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(
            self._factory_invoker, sock=self._listening, ssl=self.ssl_context
        )

    def stop(self, no_assert: bool = False) -> None:
        try:
            super().stop(no_assert)
        finally:
            self._listening.close()
