"""The weekly limit of automated calls (``call.max_per_7_days`` of a phase that calls).

A debtor is called at most so many times in any 7 days, every phase, attempt and resend
counted: a call counts from its hand-over to Twilio (a ``voice`` delivery sent, or still
``sending``), within 7 days on either side of the instant a decision is made (so a call
stamped after it, made by a dispatcher whose pass began later, counts too, and a run for
a past date leaves out the calls made more than 7 days after that date). A message due
beyond the limit goes on the phase's next channel.

``WeeklyCalls`` holds the calls of some debtors around an instant and those made since (by
a dispatch batch); dispatch decides with it (``dispatch_load`` reads the calls,
``dispatch_compose`` counts the calls a batch makes on a message's first channel and
those it resends, ``dispatch_send`` those it makes on falling back to a call), and so does
``cobro resend`` before it plans a resend that calls (``resend``).
"""

from __future__ import annotations

from bisect import insort
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from cobro.store import tables as t

WEEK = timedelta(days=7)
_CHUNK = 5000


class WeeklyCalls:
    """The calls of some debtors within 7 days of an instant (read from the deliveries),
    and those made since (``made``)."""

    def __init__(self) -> None:
        self._at: dict[int, list[datetime]] = defaultdict(list)

    def load(
        self, conn: Connection, company_id: int, customer_ids: Iterable[int], at: datetime
    ) -> None:
        """Read the calls handed over to ``customer_ids`` within 7 days on either side of
        ``at`` (what was read or made before is forgotten)."""
        self._at.clear()
        d, o = t.deliveries.c, t.outbox.c
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), _CHUNK):
            for customer_id, when in conn.execute(
                select(o.customer_id, d.at)
                .select_from(t.deliveries)
                .join(t.outbox, o.id == d.outbox_id)
                .where(
                    d.company_id == company_id,
                    d.channel == "voice",
                    d.status.in_(["sent", "sending"]),
                    d.at > at - WEEK,
                    d.at < at + WEEK,
                    o.customer_id.in_(ids[start : start + _CHUNK]),
                )
            ):
                insort(self._at[customer_id], when)

    def count(self, customer_id: int, at: datetime) -> int:
        """The debtor's calls within 7 days on either side of ``at``."""
        return sum(1 for when in self._at.get(customer_id, ()) if at - WEEK < when < at + WEEK)

    def refused(self, customer_id: int, limit: int, at: datetime) -> str | None:
        """Why the debtor may not be called at ``at`` under a limit of ``limit`` calls in 7
        days (the reason a dispatch records), or None when a call is allowed."""
        calls = self.count(customer_id, at)
        if calls < limit:
            return None
        return f"voice: {calls} call(s) within 7 days (call.max_per_7_days)"

    def room(self, customer_id: int, limit: int, at: datetime) -> int:
        """How many more calls the debtor may get at ``at`` under a limit of ``limit``
        calls in 7 days: a message to several of their numbers calls only that many."""
        return max(0, limit - self.count(customer_id, at))

    def next_allowed(self, customer_id: int, limit: int, at: datetime) -> datetime:
        """The first instant from ``at`` on at which the debtor may be called again under
        a limit of ``limit`` calls in 7 days (``at`` itself when it may be now): the
        oldest calls counted have left the 7 days by then."""
        calls = [when for when in self._at.get(customer_id, ()) if at - WEEK < when < at + WEEK]
        if len(calls) < limit:
            return at
        return max(at, calls[len(calls) - limit] + WEEK)

    def made(self, customer_id: int, at: datetime, calls: int = 1) -> None:
        """Note ``calls`` calls to the debtor made (or about to be made) at ``at``."""
        for _ in range(calls):
            insort(self._at[customer_id], at)


def beyond(limit: int) -> str:
    """Why a call the limit leaves no room for is not made (a debtor's other numbers)."""
    return f"voice: {limit} call(s) within 7 days (call.max_per_7_days)"


def next_call(when: datetime, timezone: str) -> str:
    """When the next call is allowed, as messages say it (in ``timezone``)."""
    local = when.astimezone(ZoneInfo(timezone))
    return f"the next call is allowed from {local:%Y-%m-%d %H:%M} ({timezone})"
