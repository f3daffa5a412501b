"""Which phase occurrences a run sends: explicit cases and a property over any run dates."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cobro.domain.model import Phase, Policy
from cobro.domain.policy import due_windows, occurrences

D0 = date(2026, 3, 1)


def phase(key: str, offset: int, **kw: object) -> Phase:
    return Phase(
        policy="p",
        key=key,
        name=key,
        offset_days=offset,
        template="t",
        catch_up=bool(kw.pop("catch_up", offset >= 0)),
        **kw,  # type: ignore[arg-type]
    )


SEED_001 = Policy("p", (phase("before", -3), phase("due", 0), phase("after", 5)))


def selected(
    policy: Policy, run_on: date, covered: date | None, dues: list[date], max_cu: int = 30
) -> set[tuple[int, str, int]]:
    """What the planner's query would pick: receivables whose due date is in a window."""
    out = set()
    for w in due_windows(policy, run_on, covered, max_cu, min(dues)):
        for i, due in enumerate(dues):
            if w.due_from <= due <= w.due_to:
                out.add((i, w.phase.key, w.repeat_no))
    return out


def test_reminder_n_days_before_due_is_selected_on_its_day() -> None:
    due = D0 + timedelta(days=3)
    assert selected(SEED_001, D0, D0 - timedelta(days=1), [due]) == {(0, "before", 0)}


def test_on_due_and_after_due_reminders_fall_on_their_days() -> None:
    due = D0
    assert selected(SEED_001, D0, D0 - timedelta(days=1), [due]) == {(0, "due", 0)}
    later = D0 + timedelta(days=5)
    assert selected(SEED_001, later, later - timedelta(days=1), [due]) == {(0, "after", 0)}


def test_before_due_reminder_whose_moment_passed_is_not_sent() -> None:
    due = D0 + timedelta(days=2)  # the "3 days before" moment was yesterday
    assert selected(SEED_001, D0, D0 - timedelta(days=5), [due]) == set()


def test_missed_after_due_step_is_sent_once_late() -> None:
    due = D0 - timedelta(days=7)  # "5 days after" was two days ago; no run since
    covered = D0 - timedelta(days=4)
    assert selected(SEED_001, D0, covered, [due]) == {(0, "after", 0)}
    assert selected(SEED_001, D0 + timedelta(days=1), D0, [due]) == set()


def test_a_later_phase_supersedes_a_missed_earlier_one() -> None:
    due = D0 - timedelta(days=6)  # both "due" (day 0) and "after" (day 5) were missed
    assert selected(SEED_001, D0, D0 - timedelta(days=10), [due]) == {(0, "after", 0)}


def test_steps_later_than_the_catch_up_limit_are_dropped() -> None:
    due = D0 - timedelta(days=50)
    assert selected(SEED_001, D0, None, [due], max_cu=30) == set()
    assert selected(SEED_001, D0, None, [due], max_cu=60) == {(0, "after", 0)}


def test_repeat_every_k_days_until_the_next_phase() -> None:
    policy = Policy("p", (phase("a", 1, repeat_every_days=3), phase("b", 10)))
    due = D0
    sent = []
    for n in range(0, 15):
        day = D0 + timedelta(days=n)
        for _, key, k in selected(policy, day, day - timedelta(days=1), [due]):
            sent.append((n, key, k))
    assert sent == [(1, "a", 0), (4, "a", 1), (7, "a", 2), (10, "b", 0)]


def test_max_repeats_limits_the_repetitions() -> None:
    policy = Policy("p", (phase("a", 0, repeat_every_days=2, max_repeats=1),))
    sent = [
        n
        for n in range(0, 12)
        if selected(policy, D0 + timedelta(days=n), D0 + timedelta(days=n - 1), [D0])
    ]
    assert sent == [0, 2]


# -- property: any sequence of run dates --------------------------------------------


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    offsets = draw(st.lists(st.integers(-10, 40), min_size=1, max_size=4, unique=True))
    phases = []
    for i, off in enumerate(sorted(offsets)):
        every = draw(st.none() | st.integers(1, 9))
        phases.append(
            phase(
                f"p{i}",
                off,
                repeat_every_days=every,
                max_repeats=draw(st.none() | st.integers(0, 3)) if every else None,
                catch_up=draw(st.booleans()) if draw(st.booleans()) else off >= 0,
            )
        )
    return Policy("p", tuple(phases))


def relevant(
    policy: Policy, due: date, occ_moment: date, occ_catch_up: bool, run: date, max_cu: int
) -> bool:
    """Independent statement of the rule: latest occurrence reached, not too late."""
    if occ_moment > run or (run - occ_moment).days > max_cu:
        return False
    if not occ_catch_up and occ_moment != run:
        return False
    later = [o for o in occurrences(policy, due, run) if o.moment > occ_moment]
    return not later


@settings(max_examples=300, deadline=None)
@given(
    policy=policies(),
    due_offsets=st.lists(st.integers(-60, 60), min_size=1, max_size=6),
    run_offsets=st.lists(st.integers(-20, 90), min_size=1, max_size=25),
    max_cu=st.integers(0, 40),
)
def test_each_occurrence_is_sent_at_most_once_and_exactly_once_when_relevant(
    policy: Policy, due_offsets: list[int], run_offsets: list[int], max_cu: int
) -> None:
    dues = [D0 + timedelta(days=d) for d in due_offsets]
    runs = sorted(D0 + timedelta(days=r) for r in run_offsets)  # repeats allowed
    claimed: dict[tuple[int, str, int], date] = {}
    covered: date | None = None
    previous: date | None = None
    for run in runs:
        picked = selected(policy, run, covered, dues, max_cu)
        if previous is not None and run != previous:
            # Distinct dates never pick the same occurrence twice, even without the
            # unique key the database adds.
            assert not (picked & claimed.keys())
        for key in picked:
            claimed.setdefault(key, run)  # the unique key keeps the first
        covered = run if covered is None or run > covered else covered
        previous = run
    expected: dict[tuple[int, str, int], date] = {}
    horizon = runs[-1]
    for i, due in enumerate(dues):
        for occ in occurrences(policy, due, horizon):
            first_run = next((r for r in runs if r >= occ.moment), None)
            if first_run and relevant(
                policy, due, occ.moment, occ.phase.catch_up, first_run, max_cu
            ):
                expected[(i, occ.phase.key, occ.repeat_no)] = first_run
    assert claimed == expected
