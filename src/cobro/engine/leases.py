"""Who holds an outbox row while it is being sent, and whether that holder still lives.

A dispatcher claims rows with a lease measured on the real clock (never on the
dated instant a run acts on) and signs them with its holder name: host, process
id and the process's start time. Another dispatcher takes a ``sending`` row over
only when the lease has expired, or at once when the holder is a process of the
same host that no longer exists (killed, crashed): what it had on the wire is then
sent again under the same Message-ID.

When a company has frequency caps or calls (``channels.voice``, whose phases call a debtor
at most ``call.max_per_7_days`` times a week), a debtor's rows are held by one dispatcher
at a time: a dispatcher claims no row of a debtor another live dispatcher holds a row of
(``held_debtors``), so that whoever sends to the debtor has read every delivery made to
it before. On PostgreSQL two claims of one debtor are serialised by a lock of the debtor
held until the claim commits (``lock_debtors``); on SQLite writers are serialised anyway.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Connection, Select, bindparam, select, text

from cobro.domain.model import OutboxStatus
from cobro.engine.webhooks import IS_WEBHOOK
from cobro.store import tables as t

LEASE = timedelta(minutes=10)


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux); None when there
    is no such process, or it has ended (a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat.rpartition(")")[2].split()
    if len(fields) <= 19 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


@cache
def _host() -> str:
    return socket.gethostname()[:60]


def holder_name() -> str:
    """This process, as written in ``outbox.holder``: ``host/pid/start`` (a dispatcher
    adds ``/`` and a name of its own)."""
    pid = os.getpid()
    return f"{_host()}/{pid}/{_started(pid) or '-'}"


def holder_gone(holder: str) -> bool:
    """True when ``holder`` is a process of this host that is no longer running.

    A holder on another host, or one whose liveness cannot be told, is not gone: its
    lease decides.
    """
    host, pid_text, start, *_ = [*holder.split("/"), "", ""]
    if host != _host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if start not in ("", "-"):
        return _started(pid) != start  # no such process, or the pid was reused
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def gone_holders(
    conn: Connection, company_id: int, now: datetime, orphans: Collection[str] = ()
) -> list[str]:
    """Holders of the company's leased rows that are known to have stopped: processes of
    this host that no longer run, and ``orphans`` (this process's own failed passes)."""
    o = t.outbox.c
    holders = conn.execute(
        select(o.holder)
        .where(
            o.company_id == company_id,
            o.status == OutboxStatus.SENDING.value,
            o.lease_until > now,
            o.holder.is_not(None),
        )
        .distinct()
    ).scalars()
    return [h for h in holders if h in orphans or holder_gone(h)]


def held_debtors(
    company_id: int, now: datetime, holder: str, gone: Collection[str] = ()
) -> Select[tuple[int]]:
    """The debtors of whom another dispatcher than ``holder`` still holds a row (not a
    webhook delivery's): leased until after ``now`` by a holder not ``gone``."""
    o = t.outbox.alias("held").c
    q = select(o.customer_id).where(
        o.company_id == company_id,
        o.status == OutboxStatus.SENDING.value,
        o.lease_until > now,
        o.holder != holder,
        o.step.not_like(IS_WEBHOOK),
    )
    if gone:
        q = q.where(o.holder.not_in(list(gone)))
    return q


# pg_advisory_xact_lock(_DEBTOR_LOCKS, bucket): the claims of the debtors of one bucket
# (customer id modulo _DEBTOR_BUCKETS), one at a time. Buckets, not one lock per debtor:
# advisory locks take room in PostgreSQL's shared lock table (64 a connection by
# default), which a batch of 500 debtors a dispatcher, with a dozen dispatchers, would
# fill ("out of shared memory" in every session). A bucket shared by debtors of two
# claims only makes one wait for the other; the check that follows decides.
_DEBTOR_LOCKS = 0x636F6272  # "cobr"
_DEBTOR_BUCKETS = 64
_LOCK_DEBTORS = text(
    "SELECT pg_advisory_xact_lock(:space, bucket) "
    "FROM unnest(CAST(:buckets AS integer[])) WITH ORDINALITY AS b(bucket, n) ORDER BY n"
).bindparams(bindparam("space", _DEBTOR_LOCKS))


def lock_debtors(conn: Connection, customer_ids: Collection[int]) -> None:
    """Wait until no other transaction is claiming rows of these debtors (or of others
    in their buckets), then keep them until this one ends (PostgreSQL; nothing on SQLite,
    whose writers are serialised). Taken in the order of the buckets, so that claims never
    wait for each other in a circle."""
    if conn.dialect.name != "postgresql" or not customer_ids:
        return
    buckets = sorted({int(i) % _DEBTOR_BUCKETS for i in customer_ids})
    conn.execute(_LOCK_DEBTORS, {"buckets": buckets})
