"""Keeping sending safe: the wait before a retry, a channel's circuit breaker, and the
ledger that records each message as soon as its channel has answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

FIRST_WAIT = timedelta(minutes=5)

T = TypeVar("T")


def backoff(failing_for: timedelta, cap: timedelta) -> timedelta:
    """Wait before the next attempt of a row failing for ``failing_for``: as long as it has
    failed so far (5 min, 5, 10, 20, 40...), at most ``cap``."""
    return min(max(failing_for, FIRST_WAIT), cap)


@dataclass
class Breaker:
    """A channel's circuit breaker: after ``limit`` failed connections in a row, the channel
    is not tried for ``pause_s`` seconds; then one more failure stops it again."""

    limit: int
    pause_s: float
    failures: int = 0
    open_until: float = 0.0
    reason: str = ""

    def is_open(self, now: float) -> bool:
        return now < self.open_until

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, reason: str, now: float) -> None:
        self.failures += 1
        self.reason = reason
        if self.failures >= self.limit:
            self.open_until = now + self.pause_s
            self.failures = self.limit - 1


class Ledger(Generic[T]):
    """Records attempted messages as soon as they are known, many in one transaction.

    ``write`` records a list of them and returns the keys (``key_of``) of the rows still
    held. With ``in_thread`` (PostgreSQL: a commit waits for the network and the disk) it
    runs in a thread, so that other connections keep sending meanwhile; without it
    (SQLite: a write takes a fraction of a millisecond) it runs on the event loop, which
    spares a thread's hand-over for each write. ``note`` returns
    once its message is recorded (True) or found to belong to a row no longer held
    (False). The messages that arrive while a transaction is written wait for the next:
    a sender that waits for ``note`` before taking another message has at most one
    unrecorded at any time.
    """

    def __init__(
        self,
        write: Callable[[list[T]], set[int]],
        key_of: Callable[[T], int],
        in_thread: bool = True,
    ) -> None:
        self._write = write
        self._key_of = key_of
        self._in_thread = in_thread
        self._waiting: list[tuple[T, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def note(self, attempted: T) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((attempted, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    attempted = [a for a, _ in batch]
                    if self._in_thread:
                        held = await asyncio.to_thread(self._write, attempted)
                    else:
                        held = self._write(attempted)
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():  # its sender may have been cancelled meanwhile
                            done.set_exception(exc)
                    continue
                for a, done in batch:
                    if not done.done():
                        done.set_result(self._key_of(a) in held)
        finally:
            self._writer = None
