"""Contact frequency caps (``calendar.caps``): how many messages a debtor was sent lately.

A cap counts the claims (policy phases and scheduled actions) that reached the debtor or
its billing contacts on the cap's channels within its last days, read from the recorded
deliveries, and those stamped after the instant a dispatch acts on by as many days (sent
by another dispatcher whose pass began later); receipts, banking and subscription
notices, resends and webhooks neither count nor are held back. The dispatcher asks
before sending a claim on a channel and notes each claim it sends, so that a batch with
two claims for one debtor respects the cap too; dispatchers running at once never hold
rows of one debtor together (``cobro.engine.leases``), so each has read what the others
sent before it sends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, or_, select

from cobro.config.calendar import FrequencyCap
from cobro.config.schema import RESERVED_STEP_PREFIXES
from cobro.store import tables as t

# Steps that are not claims to the debtor: neither counted nor held back.
UNCAPPED = tuple(sorted(RESERVED_STEP_PREFIXES - {"action"}))
COUNTED_ROLES = ("debtor", "contact")
_CHUNK = 5000


def capped_step(step: str) -> bool:
    """Whether the outbox step is a claim a cap applies to (a phase or a scheduled action)."""
    return step.partition("/")[0] not in UNCAPPED


class CapCounter:
    """The caps of a company and the recent claims of the debtors of one batch."""

    def __init__(self, caps: Sequence[FrequencyCap], timezone: str = "UTC") -> None:
        self.caps = list(caps)
        self.timezone = timezone
        self._sent: dict[int, list[tuple[datetime, str, int]]] = defaultdict(list)
        self._as_of: datetime | None = None

    def load(
        self, conn: Connection, company_id: int, customer_ids: Iterable[int], as_of: datetime
    ) -> None:
        """Read the claims sent to ``customer_ids`` within the longest cap before (or
        after) ``as_of``."""
        self._sent.clear()
        self._as_of = as_of
        if not self.caps:
            return
        longest = timedelta(days=max(c.days for c in self.caps))
        since, until = as_of - longest, as_of + longest
        o, d = t.outbox.c, t.deliveries.c
        ids = sorted(customer_ids)
        for at in range(0, len(ids), _CHUNK):
            rows = conn.execute(
                select(o.customer_id, d.channel, d.at, d.outbox_id)
                .join(t.deliveries, d.outbox_id == o.id)
                .where(
                    o.company_id == company_id,
                    o.customer_id.in_(ids[at : at + _CHUNK]),
                    ~or_(*(o.step.like(f"{p}/%") for p in UNCAPPED)),
                    d.status.in_(["sent", "sending"]),
                    d.recipient_role.in_(COUNTED_ROLES),
                    d.at > since,
                    d.at < until,
                )
            )
            for row in rows:
                self._sent[row.customer_id].append((row.at, row.channel, row.outbox_id))

    def moved_to(self, as_of: datetime) -> None:
        """Count from ``as_of`` on (a simulation going from day to day)."""
        self._as_of = as_of

    def full(self, customer_id: int, channel: str, outbox_id: int) -> str | None:
        """The first cap that a claim (``outbox_id``) to the debtor on ``channel`` would
        exceed, described; None when every cap allows it."""
        if self._as_of is None:
            return None
        sent = self._sent.get(customer_id, ())
        for i, cap in enumerate(self.caps):
            if cap.channels and channel not in cap.channels:
                continue
            days = timedelta(days=cap.days)
            since, until = self._as_of - days, self._as_of + days
            claims = {
                oid
                for at, ch, oid in sent
                if since < at < until
                and oid != outbox_id
                and (not cap.channels or ch in cap.channels)
            }
            if len(claims) >= cap.max:
                return f"{cap.describe()} (calendar.caps[{i}])"
        return None

    def use(self, customer_id: int, channel: str, outbox_id: int, at: datetime) -> None:
        """Note a claim about to be sent to the debtor on ``channel``."""
        self._sent[customer_id].append((at, channel, outbox_id))
