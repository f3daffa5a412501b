"""The wait before a retry, a channel's circuit breaker, and the ledger's group writes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from cobro.engine.sending import Breaker, Ledger, backoff


def test_the_wait_before_a_retry_is_as_long_as_the_failure_so_far_within_its_bounds() -> None:
    cap = timedelta(hours=1)
    waits, failing = [], timedelta(0)
    for _ in range(8):
        wait = backoff(failing, cap)
        waits.append(int(wait.total_seconds() // 60))
        failing += wait
    assert waits == [5, 5, 10, 20, 40, 60, 60, 60]


def test_a_breaker_opens_after_failures_in_a_row_and_one_more_failure_reopens_it() -> None:
    breaker = Breaker(limit=3, pause_s=30)
    breaker.failed("refused", 0)
    breaker.succeeded()  # a success in between: not in a row
    breaker.failed("refused", 1)
    breaker.failed("refused", 2)
    assert not breaker.is_open(2)
    breaker.failed("timed out", 3)
    assert breaker.is_open(3) and breaker.is_open(32) and breaker.reason == "timed out"
    assert not breaker.is_open(33)  # tried again after the pause...
    breaker.failed("timed out", 34)
    assert breaker.is_open(35)  # ...and a single failure stops it again


def test_the_ledger_writes_messages_that_arrive_together_in_one_transaction() -> None:
    writes: list[list[int]] = []

    def write(items: list[int]) -> set[int]:
        writes.append(items)
        return {i for i in items if i != 3}  # row 3 was taken over by someone else

    async def main() -> list[bool]:
        ledger: Ledger[int] = Ledger(write, lambda i: i)
        return list(await asyncio.gather(*(ledger.note(i) for i in range(5))))

    held = asyncio.run(main())

    assert held == [True, True, True, False, True]
    assert writes == [[0, 1, 2, 3, 4]]
