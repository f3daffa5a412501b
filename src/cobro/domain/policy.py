"""Which phase occurrences are due on a run date, as ranges of due dates.

The planner never loops over receivables: it asks this module for a list of
``DueWindow`` (phase, repeat number, range of due dates) and selects the
receivables whose due date falls in each range with one indexed query.

A receivable with due date ``d`` reaches occurrence ``k`` of phase ``p`` on its
*moment* ``d + offset(p) + k * repeat(p)``. On a run for date ``R`` an
occurrence is sent when:

* its moment is on or before ``R`` and after ``covered`` (the last date
  already planned), so each moment is handled by exactly one run;
* it is the latest occurrence reached by ``R``: a later phase or repeat
  supersedes it (a debtor is told where they stand, not every step missed);
* it is not too late: phases without catch-up only on their own day, the
  others at most ``max_catch_up_days`` after their moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from cobro.domain.model import Phase, Policy

FAR = 36_500  # days: "no next phase"


@dataclass(frozen=True)
class DueWindow:
    """Receivables due in ``[due_from, due_to]`` reach occurrence ``repeat_no`` of ``phase``."""

    phase: Phase
    repeat_no: int
    due_from: date
    due_to: date

    @property
    def moment_offset(self) -> int:
        return self.phase.offset_days + self.repeat_no * (self.phase.repeat_every_days or 0)


@dataclass(frozen=True)
class Occurrence:
    """One step occurrence of one receivable."""

    phase: Phase
    repeat_no: int
    moment: date


def _steps(policy: Policy) -> Iterator[tuple[Phase, int, int, int]]:
    """Yield (phase, repeat_no, start_offset, end_offset_exclusive) in moment order."""
    phases = sorted(policy.phases, key=lambda p: p.offset_days)
    for i, ph in enumerate(phases):
        nxt = phases[i + 1].offset_days if i + 1 < len(phases) else FAR
        every = ph.repeat_every_days
        if not every:
            yield ph, 0, ph.offset_days, nxt
            continue
        k = 0
        while True:
            start = ph.offset_days + k * every
            if start >= nxt or (ph.max_repeats is not None and k > ph.max_repeats):
                break
            last = ph.max_repeats is not None and k == ph.max_repeats
            end = nxt if last else min(start + every, nxt)
            yield ph, k, start, end
            k += 1


def lower_bound(run_on: date, covered: date | None, max_catch_up_days: int) -> date:
    """Exclusive lower bound of the moments a run for ``run_on`` handles."""
    floor = run_on - timedelta(days=max_catch_up_days + 1)
    if covered is None or covered >= run_on:
        # First run, or a repeated / back-dated one: the unique keys make the
        # re-selection of already-planned moments harmless.
        return floor if covered is None else max(floor, run_on - timedelta(days=1))
    return max(floor, covered)


def due_windows(
    policy: Policy,
    run_on: date,
    covered: date | None,
    max_catch_up_days: int,
    earliest_due: date | None = None,
) -> list[DueWindow]:
    """Ranges of due dates whose receivables reach a step on ``run_on``.

    ``covered`` is the last date a run already planned for (None: never ran).
    ``earliest_due`` bounds the search for open-ended repeats.
    """
    lb = lower_bound(run_on, covered, max_catch_up_days)
    out: list[DueWindow] = []
    for ph, k, start, end in _steps(policy):
        # Latest occurrence reached by run_on is this one when
        # start <= run_on - due < end, i.e. run_on - end < due <= run_on - start.
        hi = run_on - timedelta(days=start)
        lo_exclusive = run_on - timedelta(days=end) if end < FAR else None
        # Its moment due + start must be after lb: due > lb - start.
        moment_lo = lb - timedelta(days=start)
        if not ph.catch_up:
            moment_lo = max(moment_lo, run_on - timedelta(days=start + 1))
        lo = moment_lo if lo_exclusive is None else max(lo_exclusive, moment_lo)
        lo_inclusive = lo + timedelta(days=1)
        if lo_inclusive > hi or (earliest_due is not None and hi < earliest_due):
            continue
        out.append(DueWindow(ph, k, lo_inclusive, hi))
    return out


def occurrences(policy: Policy, due_on: date, through: date) -> Iterator[Occurrence]:
    """Every step occurrence of a receivable due on ``due_on`` with moment <= ``through``."""
    for ph, k, start, _end in _steps(policy):
        moment = due_on + timedelta(days=start)
        if moment > through:
            return
        yield Occurrence(ph, k, moment)
