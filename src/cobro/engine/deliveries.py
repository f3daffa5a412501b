"""What happens to a delivery after it was handed over: a status callback, a bounce, a
complaint. ``record_state`` is the one place that moves a delivery on; it also keeps the
address's suppression and, when today's claim reached nobody after all, plans it again
at once so that it goes on the next channel of its phase the same day."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select, update

from cobro.config import CobroConfig
from cobro.domain.delivery import FAILURES, DeliveryState, moves_to
from cobro.domain.model import OutboxStatus, Recipient
from cobro.evidence.chain import EvidenceEntry, append
from cobro.store import tables as t
from cobro.store.db import insert_ignoring

# Whom a claim is for: reaching only an internal copy does not make it reached.
MAIN_ROLES = frozenset({Recipient.DEBTOR.value, "admin", "contact"})
# Channels whose addresses are suppressed after failures (push endpoints are dropped
# by the push channel itself when the service says they are gone).
SUPPRESSIBLE = frozenset({"email", "sms"})


@dataclass(frozen=True)
class Followup:
    """The company settings ``record_state`` needs."""

    timezone: str = "UTC"
    soft_limit: int = 3  # temporary failures of an address that suppress it
    # Unanswered calls: step -> (calls of one message to one number, minutes between
    # them) of each phase calling (``call`` settings); other steps get the defaults.
    calls: dict[str, tuple[int, int]] = field(default_factory=dict)

    def call(self, step: str) -> tuple[int, int]:
        return self.calls.get(step, CALL_DEFAULTS)


CALL_DEFAULTS = (3, 120)


def followup_of(config: CobroConfig) -> Followup:
    """The ``Followup`` settings of a company's configuration."""
    return Followup(
        config.company.timezone,
        config.channels.email.bounces.soft_limit,
        {
            f"{name}/{ph.key}": (ph.call.attempts, ph.call.retry_after_minutes)
            for name, pc in config.policies.items()
            for ph in pc.phases
            if "voice" in ph.channels
        },
    )


@dataclass(frozen=True)
class Learned:
    """What one report did."""

    delivery_id: int
    state: DeliveryState  # the delivery's state after the report
    moved: bool  # False: a late or repeated report, nothing changed
    suppressed: bool = False  # the address is suppressed from now on
    fallback: bool = False  # the claim goes out again today on the next channel
    # an unanswered call: called again from then (None: not called again)
    call_again_at: datetime | None = None


def normalized(channel: str, address: str) -> str:
    return address.strip().lower() if channel == "email" else address.strip()


def record_state(
    conn: Connection,
    company_id: int,
    delivery_id: int,
    state: DeliveryState,
    *,
    source: str,
    detail: str | None,
    at: datetime,
    settings: Followup,
    provider_id: str | None = None,
    suppress_as: str | None = None,
    in_doubt: bool = False,
) -> Learned:
    """Move delivery ``delivery_id`` (of ``company_id``) to ``state``, learned from
    ``source`` at ``at``; ``suppress_as`` names why a failure suppresses the address
    (``hard_bounce``, ``complaint``...; default: by the state). A state the delivery is
    already in or past changes nothing. ``in_doubt``: a hand-over whose answer was never
    recorded is given up on (``settle_in_doubt``): its status stays ``sending``, so the
    address is never written to again for the claim, which goes on its next channel."""
    d, o = t.deliveries.c, t.outbox.c
    row = conn.execute(
        select(
            d.id,
            d.outbox_id,
            d.channel,
            d.recipient,
            d.recipient_role,
            d.status,
            d.state,
            d.at,
            d.attempt,
            d.message_id,
            d.provider_id,
            o.customer_id,
            o.step,
            o.occurrence_on,
            o.status.label("claim_status"),
        )
        .join(t.outbox, o.id == d.outbox_id)
        .where(d.id == delivery_id, d.company_id == company_id)
        .with_for_update(of=t.deliveries)
    ).one_or_none()
    if row is None:
        raise LookupError(f"no delivery {delivery_id}")
    if not moves_to(row.state, state):
        return Learned(delivery_id, DeliveryState(row.state), False)
    values: dict[str, Any] = {"state": state.value, "state_at": at}
    handed = row.status
    if row.status == "sending" and not in_doubt:  # a hand-over never answered (a crash)
        handed = "failed" if state in FAILURES and provider_id is None else "sent"
        values["status"] = handed
    if provider_id and not row.provider_id:
        values["provider_id"] = provider_id[:300]
    conn.execute(update(t.deliveries).where(d.id == delivery_id).values(**values))
    conn.execute(
        t.delivery_events.insert().values(
            company_id=company_id,
            delivery_id=delivery_id,
            state=state.value,
            source=source[:40],
            detail=(detail or None) and detail[:1000],
            at=at,
        )
    )
    entries = [
        EvidenceEntry(
            "delivery.state",
            f"outbox:{row.outbox_id}",
            row.customer_id,
            at,
            {
                "delivery": delivery_id,
                "channel": row.channel,
                "recipient": row.recipient,
                "message_id": row.message_id,
                "attempt": row.attempt,
                "state": state.value,
                "status": handed,
                "source": source,
                "detail": (detail or None) and detail[:300],
            },
        )
    ]
    suppressed = False
    if state in FAILURES and row.channel in SUPPRESSIBLE and handed == "sent":
        suppressed = _count_failure(
            conn, company_id, row.channel, row.recipient, state, suppress_as, detail, at,
            delivery_id, settings.soft_limit,
        )  # fmt: skip
    fallback = False
    again: datetime | None = None
    if state in FAILURES and (handed == "sent" or in_doubt) and row.recipient_role in MAIN_ROLES:
        when = at
        if row.channel == "voice" and state is DeliveryState.TEMPORARY_FAILURE:
            attempts, minutes = settings.call(row.step)
            if _unanswered(conn, row) < attempts:
                when = again = at + timedelta(minutes=minutes)
        fallback = _reopen_today(
            conn, company_id, row, at, settings, detail, entries, when, any_day=in_doubt
        )
        again = again if fallback else None
    append(conn, company_id, entries)
    return Learned(delivery_id, state, True, suppressed, fallback and again is None, again)


def _unanswered(conn: Connection, row: Any) -> int:
    """The unanswered calls (busy, no answer, a machine) of ``row``'s claim to its number."""
    d = t.deliveries.c
    return int(
        conn.execute(
            select(func.count())
            .select_from(t.deliveries)
            .where(
                d.outbox_id == row.outbox_id,
                d.channel == "voice",
                d.recipient == row.recipient,
                d.status == "sent",
                d.state == DeliveryState.TEMPORARY_FAILURE.value,
            )
        ).scalar_one()
    )


def _count_failure(
    conn: Connection,
    company_id: int,
    channel: str,
    recipient: str,
    state: DeliveryState,
    suppress_as: str | None,
    detail: str | None,
    at: datetime,
    delivery_id: int,
    soft_limit: int,
) -> bool:
    """Count a failure of the address; suppress it when it is for good (or one too many).
    True when the address is suppressed by this failure."""
    s = t.suppressions.c
    address = normalized(channel, recipient)
    conn.execute(
        insert_ignoring(conn, t.suppressions)
        .values(
            company_id=company_id,
            channel=channel,
            address=address,
            soft_failures=0,
            updated_at=at,
        )
        .on_conflict_do_nothing()
    )
    found = conn.execute(
        select(s.id, s.soft_failures, s.suppressed_at)
        .where(s.company_id == company_id, s.channel == channel, s.address == address)
        .with_for_update()
    ).one()
    if found.suppressed_at is not None:
        return False
    soft = found.soft_failures + (state is DeliveryState.TEMPORARY_FAILURE)
    reason: str | None = None
    if state is DeliveryState.PERMANENT_FAILURE:
        reason = suppress_as or ("hard_bounce" if channel == "email" else "undelivered")
    elif state is DeliveryState.TEMPORARY_FAILURE and soft >= soft_limit:
        reason = "soft_bounces" if channel == "email" else "undelivered"
    elif suppress_as is not None and state is not DeliveryState.TECHNICAL_FAILURE:
        reason = suppress_as
    conn.execute(
        update(t.suppressions)
        .where(s.id == found.id)
        .values(
            soft_failures=soft,
            updated_at=at,
            **(
                {
                    "suppressed_at": at,
                    "reason": reason,
                    "detail": (detail or None) and detail[:1000],
                    "delivery_id": delivery_id,
                }
                if reason
                else {}
            ),
        )
    )
    return reason is not None


def _reopen_today(
    conn: Connection,
    company_id: int,
    row: Any,
    at: datetime,
    settings: Followup,
    detail: str | None,
    entries: list[EvidenceEntry],
    when: datetime | None = None,
    any_day: bool = False,
) -> bool:
    """Plan the claim of a delivery that failed after all again, due at once (or at
    ``when``: an unanswered call called again), when the failure is known the same day
    the message went out and nobody it is for was reached otherwise: it then goes on the
    next channel of its phase (the failed address is left out). Later failures only steer
    the next message."""
    tz = ZoneInfo(settings.timezone)
    if row.claim_status != OutboxStatus.SENT.value or (
        not any_day and at.astimezone(tz).date() != row.at.astimezone(tz).date()
    ):
        return False
    d = t.deliveries.c
    others = conn.execute(
        select(func.count())
        .select_from(t.deliveries)
        .where(
            d.outbox_id == row.outbox_id,
            d.id != row.id,
            d.status.in_(["sent", "sending"]),
            d.state.not_in([s.value for s in FAILURES]),
            d.recipient_role.in_(MAIN_ROLES),
        )
    ).scalar_one()
    if others:
        return False
    o = t.outbox.c
    reason = f"{row.channel} to {row.recipient} failed after sending: {detail or 'no detail'}"
    conn.execute(
        update(t.outbox)
        .where(o.id == row.outbox_id, o.status == OutboxStatus.SENT.value)
        .values(
            status=OutboxStatus.PLANNED.value,
            next_attempt_at=when or at,
            finished_at=None,
            failing_since=None,
            reason=reason[:500],
        )
    )
    entries.append(
        EvidenceEntry(
            "claim.reopened",
            f"outbox:{row.outbox_id}",
            row.customer_id,
            at,
            {
                "step": row.step,
                "occurrence_on": row.occurrence_on.isoformat(),
                "delivery": row.id,
                "reason": reason[:300],
                **({"due_at": when.isoformat()} if when is not None and when != at else {}),
            },
        )
    )
    return True


@dataclass(frozen=True)
class Barriers:
    """What keeps messages from addresses: suppressed addresses and opted-out debtors."""

    suppressed: dict[tuple[str, str], str]  # (channel, address) -> reason
    opted_out: dict[tuple[int, str], str]  # (customer id, channel) -> source

    def blocks(self, customer_id: int | None, channel: str, address: str) -> str | None:
        """Why ``address`` on ``channel`` is not written to, or None."""
        why = self.suppressed.get((channel, normalized(channel, address)))
        if why is not None:
            return f"{channel} {address} suppressed ({why.replace('_', ' ')})"
        if customer_id is not None and (customer_id, channel) in self.opted_out:
            return f"{channel} opted out ({self.opted_out[customer_id, channel].replace('_', ' ')})"
        return None


def barriers(
    conn: Connection,
    company_id: int,
    customer_ids: Iterable[int],
    addresses: Iterable[tuple[str, str]],
) -> Barriers:
    """The suppressions among ``addresses`` ((channel, address) pairs) and the opt-outs
    of ``customer_ids``."""
    s, x = t.suppressions.c, t.optouts.c
    wanted = sorted({(ch, normalized(ch, a)) for ch, a in addresses if ch in SUPPRESSIBLE})
    suppressed: dict[tuple[str, str], str] = {}
    for at in range(0, len(wanted), 2000):
        chunk = wanted[at : at + 2000]
        for r in conn.execute(
            select(s.channel, s.address, s.reason).where(
                s.company_id == company_id,
                s.suppressed_at.is_not(None),
                s.address.in_([a for _, a in chunk]),
            )
        ):
            suppressed[r.channel, r.address] = r.reason or "suppressed"
    ids = sorted(set(customer_ids))
    opted: dict[tuple[int, str], str] = {}
    for at in range(0, len(ids), 5000):
        for r in conn.execute(
            select(x.customer_id, x.channel, x.source).where(
                x.company_id == company_id, x.customer_id.in_(ids[at : at + 5000])
            )
        ):
            opted[r.customer_id, r.channel] = r.source
    return Barriers(suppressed, opted)


IN_DOUBT = "no answer recorded from the provider"


REPORTING_CHANNELS = ("sms", "voice")  # status callbacks tell what became of a hand-over


def settle_in_doubt(
    conn: Connection, company_id: int, now: datetime, minutes: int, settings: Followup
) -> list[Learned]:
    """Deliveries left ``sending`` for ``minutes`` (a dispatcher stopped between the
    provider's acceptance and the record). One whose provider id is known waits for its
    report. One without is a technical failure: its address is not written to again
    for the claim (it may have been sent), and the claim is planned again at once, for
    the next channel of its phase. Their status callback still finds them."""
    d = t.deliveries.c
    stuck = conn.execute(
        select(d.id)
        .where(
            d.company_id == company_id,
            d.status == "sending",
            d.state == DeliveryState.SENDING.value,
            d.provider_id.is_(None),
            # Only channels whose provider reports back: an email interrupted mid-send is
            # sent again, once, by the next dispatch (same Message-ID), as always.
            d.channel.in_(REPORTING_CHANNELS),
            d.at <= now - timedelta(minutes=minutes),
        )
        .order_by(d.id)
    ).scalars()
    return [
        record_state(
            conn,
            company_id,
            int(delivery),
            DeliveryState.TECHNICAL_FAILURE,
            source="dispatch",
            detail=f"{IN_DOUBT} within {minutes} min of the hand-over: in doubt, "
            "not sent again on this channel",
            at=now,
            settings=settings,
            in_doubt=True,
        )
        for delivery in list(stuck)
    ]
