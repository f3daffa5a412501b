"""Provider rate limits shared by every worker: each channel of a company has a next free
instant in the database (``rate_slots``); a message takes the slot and moves it on by one
interval (1 / rate) in one short transaction, then waits for its slot. However many
workers, processes or hosts send, a channel never goes faster than its rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from sqlalchemy import Engine, case, update

from cobro.store import tables as t
from cobro.store.db import insert_ignoring, retrying


def reserve(engine: Engine, company_id: int, channel: str, interval: float, now: float) -> float:
    """Take the next slot of ``channel`` (seconds since the epoch), at ``now`` or later."""
    r = t.rate_slots.c

    def taken() -> float:
        with engine.begin() as conn:
            conn.execute(
                insert_ignoring(conn, t.rate_slots)
                .values(company_id=company_id, channel=channel, next_at=now)
                .on_conflict_do_nothing()
            )
            moved = conn.execute(
                update(t.rate_slots)
                .where(r.company_id == company_id, r.channel == channel)
                .values(next_at=case((r.next_at > now, r.next_at), else_=now) + interval)
                .returning(r.next_at)
            ).scalar_one()
            return float(moved) - interval

    return retrying(taken)


class SharedPace:
    """``await pace(channel)`` returns when ``channel`` may take the next message under
    its rate (messages per second in ``rates``; a channel not there is not paced)."""

    def __init__(
        self,
        engine: Engine,
        company_id: int,
        rates: Mapping[str, float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.company_id = company_id
        self.intervals = {ch: 1.0 / rate for ch, rate in rates.items() if rate > 0}
        self.clock = clock

    def slot(self, channel: str) -> float | None:
        """The instant ``channel``'s next message may go (None: not paced)."""
        interval = self.intervals.get(channel)
        if interval is None:
            return None
        return reserve(self.engine, self.company_id, channel, interval, self.clock())

    async def __call__(self, channel: str) -> None:
        if channel not in self.intervals:
            return
        loop = asyncio.get_running_loop()
        at = await loop.run_in_executor(None, self.slot, channel)
        if at is not None:
            wait_s = at - self.clock()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
