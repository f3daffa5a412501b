"""Debtor-level escalation: which phase, if any, a debtor is told on a date.

A debtor is told where they stand, once: every open item of the debtor is
listed in one claim at the debtor's phase. The phase is decided per debtor,
not per invoice, from three things:

* ``DebtSummary``: for each phase of the debtor's policy, the oldest open
  item big enough for it (its ``min_balance``), and whether an item reaches
  the phase exactly today (for phases without catch-up, which are only sent
  on their own day, such as "due in 3 days");
* ``Level``: the phase the debtor was last told, when, and how many repeats
  of it went out;
* the run date.

The rules (``decide``):

1. **Never down while the debt is unpaid.** The level stays while an item
   that had reached it when it was sent is still open, or while any item is
   overdue. When all of those are paid and nothing is overdue, the escalation
   ends and later debt starts again from the beginning.
2. **Step by step.** The next phase is the first one above the level that
   applies today (after-due phases apply from their day on; phases without
   catch-up only on their own day, and are skipped once it has passed). It is
   sent only when the level's phase went out at least the gap between the two
   phases earlier (``min_gap_days`` of the phase, else the distance between
   their days). So a block is never the first thing a debtor hears, and a
   go-live on old debt starts at the first overdue phase and climbs.
3. **One claim, then wait.** When no higher phase applies, a repeating phase
   repeats every K days (up to ``max_repeats``); a debtor whose next step is
   held for its gap gets nothing that day.

4. **Paused items wait.** An item with an open dispute or an open promise to pay
   is left out of the phases (nothing is sent about it) but still holds the level:
   while it is open the debtor is not back at the beginning, so when its pause ends
   dunning resumes from where the debtor stood, one step (one claim) at a time. A
   debtor whose only debt that reached its phase is paused gets no repeat of it.

The decision also says when to look at the debtor again (``review_on``): the
day the gap to the next phase ends, or the next repeat; the next day while some
item is paused (a promise may break, a dispute be rejected, any day). Pure: no
clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from cobro.domain.model import Phase, Policy


@dataclass(frozen=True)
class Level:
    """Where a debtor stands: the phase last sent, the day it was sent, its repeats."""

    phase_key: str
    reached_on: date
    repeats: int = 0


@dataclass(frozen=True)
class DebtSummary:
    """A debtor's open items as escalation needs them, per phase of the policy (in order).

    ``oldest[i]``: the earliest due date of an open item with at least phase i's
    minimum balance (None: none). ``on_day[i]``: an open item with that balance
    reaches phase i exactly on the run date. ``oldest_open``: the earliest due date
    of any open item. All three leave paused items out (an open dispute or promise);
    ``paused_oldest`` is the earliest due date of a paused open item (None: none).
    """

    oldest: tuple[date | None, ...]
    on_day: tuple[bool, ...]
    oldest_open: date | None
    paused_oldest: date | None = None


@dataclass(frozen=True)
class Decision:
    """What a run does for one debtor."""

    send: Phase | None  # the phase to claim today, or None
    repeat_no: int  # 0 for the first time at this phase, k for its k-th repeat
    level: Level | None  # the debtor's level after today
    review_on: date | None  # when the debtor must be looked at again, whatever happens
    held: bool = False  # a higher phase applies but its gap has not passed


def gap_days(policy: Policy, lower: Phase, higher: Phase) -> int:
    """Days that must pass between sending ``lower`` and sending ``higher``."""
    if higher.min_gap_days is not None:
        return higher.min_gap_days
    return max(1, higher.offset_days - lower.offset_days)


def _index(policy: Policy, key: str) -> int | None:
    return policy.positions.get(key)


def still_standing(
    policy: Policy, level: Level | None, debt: DebtSummary, run_on: date
) -> Level | None:
    """``level``, or None once the escalation is over: every item that had reached the
    level when it was sent is paid and nothing is overdue any more."""
    if level is None:
        return None
    i = _index(policy, level.phase_key)
    oldest = min((d for d in (debt.oldest_open, debt.paused_oldest) if d is not None), default=None)
    if i is None or oldest is None:
        return None  # the phase left the policy, or nothing is open: start again
    reached_by = level.reached_on - timedelta(days=policy.phases[i].offset_days)
    if oldest <= reached_by or oldest < run_on:
        return level
    return None


def _reached(phase: Phase, oldest: date | None, run_on: date) -> bool:
    return oldest is not None and (run_on - oldest).days >= phase.offset_days


def applies(phase: Phase, oldest: date | None, on_day: bool, run_on: date) -> bool:
    """Whether ``phase`` can be sent on ``run_on`` to a debtor with this debt."""
    return _reached(phase, oldest, run_on) and (phase.catch_up or on_day)


def decide(policy: Policy, level: Level | None, debt: DebtSummary, run_on: date) -> Decision:
    """The debtor's claim on ``run_on`` (see the module's rules)."""
    found = _decide(policy, level, debt, run_on)
    if debt.paused_oldest is None:
        return found
    tomorrow = run_on + timedelta(days=1)
    if found.review_on is None or found.review_on > tomorrow:
        return replace(found, review_on=tomorrow)
    return found


def _decide(policy: Policy, level: Level | None, debt: DebtSummary, run_on: date) -> Decision:
    phases = policy.phases
    current = still_standing(policy, level, debt, run_on)
    if current is not None and run_on < current.reached_on:
        # A back-dated run: the debtor's level is already past this date.
        return Decision(None, 0, current, None)
    start = 0
    cur: Phase | None = None
    if current is not None:
        i = _index(policy, current.phase_key)
        assert i is not None  # still_standing checked it
        cur, start = phases[i], i + 1
    for j in range(start, len(phases)):
        ph = phases[j]
        if not applies(ph, debt.oldest[j], debt.on_day[j], run_on):
            continue
        if cur is not None and current is not None:
            ready = current.reached_on + timedelta(days=gap_days(policy, cur, ph))
            if run_on < ready:
                return Decision(None, 0, current, ready, held=True)
        nxt = Level(ph.key, run_on, 0)
        return Decision(ph, 0, nxt, next_review(policy, j, nxt))
    if cur is not None and current is not None and cur.repeat_every_days:
        i = _index(policy, cur.key)
        assert i is not None
        if debt.paused_oldest is not None and not _reached(cur, debt.oldest[i], run_on):
            # Only paused items have reached the phase: no repeat while they wait.
            return Decision(None, 0, current, None)
        within = cur.max_repeats is None or current.repeats < cur.max_repeats
        due = current.reached_on + timedelta(days=cur.repeat_every_days)
        if within and run_on >= due:
            nxt = Level(cur.key, run_on, current.repeats + 1)
            return Decision(cur, nxt.repeats, nxt, next_review(policy, i, nxt))
        if within:
            return Decision(None, 0, current, due)
    return Decision(None, 0, current, None)


def next_review(policy: Policy, i: int, level: Level) -> date | None:
    """After sending phase ``i``: the first day the next phase or a repeat could go out."""
    ph = policy.phases[i]
    days: list[int] = []
    if i + 1 < len(policy.phases):
        days.append(gap_days(policy, ph, policy.phases[i + 1]))
    if ph.repeat_every_days and (ph.max_repeats is None or level.repeats < ph.max_repeats):
        days.append(ph.repeat_every_days)
    return level.reached_on + timedelta(days=min(days)) if days else None


def reached_phase(policy: Policy, due_on: date, balance_minor: int, on: date) -> Phase | None:
    """The highest phase one item has reached on ``on`` (for showing each item's status)."""
    found = None
    for ph in policy.phases:
        if (on - due_on).days >= ph.offset_days and balance_minor >= ph.min_balance_minor:
            found = ph
    return found


def summarize(
    policy: Policy,
    items: list[tuple[date, int]],
    run_on: date,
    paused: Sequence[tuple[date, int]] = (),
) -> DebtSummary:
    """The ``DebtSummary`` of open items given as (due date, balance in minor units), and of
    ``paused`` ones; the planner computes the same in SQL."""
    paused_open = [due for due, bal in paused if bal > 0]
    open_items = [(due, bal) for due, bal in items if bal > 0]
    oldest: list[date | None] = []
    on_day: list[bool] = []
    for ph in policy.phases:
        big = [due for due, bal in open_items if bal >= max(1, ph.min_balance_minor)]
        oldest.append(min(big) if big else None)
        on_day.append(run_on - timedelta(days=ph.offset_days) in big)
    return DebtSummary(
        tuple(oldest),
        tuple(on_day),
        min((due for due, _ in open_items), default=None),
        min(paused_open, default=None),
    )
