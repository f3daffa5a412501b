"""Debtor-level escalation: one phase per debtor, never down while unpaid, step by step."""

from __future__ import annotations

from datetime import date, timedelta
from importlib import resources

from hypothesis import given, settings
from hypothesis import strategies as st

from cobro.config import parse_config
from cobro.domain.escalation import Level, decide, reached_phase, summarize
from cobro.domain.model import Policy

STARTER = (resources.files("cobro") / "starter" / "cobro.yaml").read_text(encoding="utf-8")
CONFIG = parse_config(STARTER, "cobro.yaml")
B2B = CONFIG.policy("b2b")  # 00 at -7 (no catch-up), 01 +7, 02 +15, 03 +30, 04 +45, 05 +60
CONSUMER = CONFIG.policy("consumer")  # before -3, due 0 (no catch-up), after +5 every 10 x3
DAY = date(2026, 6, 1)


def keys(policy: Policy) -> list[str]:
    return [p.key for p in policy.phases]


def run_days(
    policy: Policy,
    items: list[tuple[date, int]],
    days: list[date],
    paid: dict[date, set[int]] | None = None,
) -> list[tuple[date, str, int]]:
    """Decide every day in ``days`` (payments of ``paid[day]`` item indexes first)."""
    level: Level | None = None
    balances = [bal for _, bal in items]
    sent = []
    for day in days:
        for i in (paid or {}).get(day, set()):
            balances[i] = 0
        debt = summarize(
            policy, [(due, b) for (due, _), b in zip(items, balances, strict=True)], day
        )
        d = decide(policy, level, debt, day)
        level = d.level
        if d.send is not None:
            sent.append((day, d.send.key, d.repeat_no))
    return sent


def daily(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_go_live_on_old_debt_starts_at_the_first_overdue_phase_and_climbs_one_gap_at_a_time():
    items = [(DAY - timedelta(days=200), 90_000)]  # 200 days overdue at go-live
    sent = run_days(B2B, items, daily(DAY, DAY + timedelta(days=60)))
    assert sent == [
        (DAY, "01", 0),
        (DAY + timedelta(days=8), "02", 0),  # 15 - 7
        (DAY + timedelta(days=23), "03", 0),  # + (30 - 15)
        (DAY + timedelta(days=38), "04", 0),  # + (45 - 30)
        (DAY + timedelta(days=53), "05", 0),  # + (60 - 45): the block comes last
    ]


def test_a_missed_week_sends_the_phase_that_is_due_once_not_every_skipped_one():
    items = [(DAY, 50_000)]
    days = [DAY + timedelta(days=7), DAY + timedelta(days=40), DAY + timedelta(days=41)]
    assert run_days(B2B, items, days) == [(DAY + timedelta(days=7), "01", 0), (days[1], "02", 0)]


def test_a_newer_invoice_never_lowers_the_phase_while_the_older_one_is_unpaid():
    old, new = (DAY - timedelta(days=30), 10_000), (DAY + timedelta(days=10), 10_000)
    sent = run_days(B2B, [old, new], daily(DAY - timedelta(days=23), DAY + timedelta(days=40)))
    phases = [key for _, key, _ in sent]
    assert phases == sorted(phases)
    assert "00" not in phases[1:]  # the new invoice's "due in 7 days" is not sent at 01+


def test_paying_the_debt_that_set_the_phase_starts_later_debt_from_the_beginning():
    old, new = (DAY - timedelta(days=60), 10_000), (DAY + timedelta(days=30), 10_000)
    sent = run_days(
        B2B,
        [old, new],
        daily(DAY, DAY + timedelta(days=40)),
        paid={DAY + timedelta(days=10): {0}},
    )
    assert sent == [
        (DAY, "01", 0),
        (DAY + timedelta(days=8), "02", 0),
        (DAY + timedelta(days=23), "00", 0),  # the new invoice, 7 days before its due date
        (DAY + timedelta(days=37), "01", 0),
    ]


def test_a_debt_below_a_phase_minimum_stops_below_that_phase():
    items = [(DAY - timedelta(days=100), 4_999)]  # 05 asks for at least 50.00
    sent = run_days(B2B, items, daily(DAY, DAY + timedelta(days=120)))
    assert [k for _, k, _ in sent] == ["01", "02", "03", "04"]


def test_a_repeating_last_phase_repeats_every_k_days_up_to_its_limit():
    items = [(DAY, 8_000)]
    sent = run_days(CONSUMER, items, daily(DAY - timedelta(days=3), DAY + timedelta(days=60)))
    assert sent == [
        (DAY - timedelta(days=3), "before", 0),
        (DAY, "due", 0),
        (DAY + timedelta(days=5), "after", 0),
        (DAY + timedelta(days=15), "after", 1),
        (DAY + timedelta(days=25), "after", 2),
        (DAY + timedelta(days=35), "after", 3),
    ]


def test_reminders_without_catch_up_are_only_sent_on_their_day():
    items = [(DAY, 8_000)]
    # Runs start one day after "3 days before due" and skip the due date itself.
    days = [DAY - timedelta(days=2), DAY + timedelta(days=1), DAY + timedelta(days=5)]
    assert run_days(CONSUMER, items, days) == [(DAY + timedelta(days=5), "after", 0)]


def test_a_paused_item_holds_the_level_and_its_debtor_is_looked_at_again_the_next_day():
    level = Level("01", DAY - timedelta(days=3))
    paused = summarize(B2B, [], DAY, paused=[(DAY - timedelta(days=20), 50_000)])
    d = decide(B2B, level, paused, DAY)
    assert d.send is None and d.level == level  # not back at the beginning
    assert d.review_on == DAY + timedelta(days=1)  # a pause can end any day
    # Once the pause ends, the next phase goes out: one step, from where it stood.
    resumed = summarize(B2B, [(DAY - timedelta(days=40), 50_000)], DAY + timedelta(days=20))
    after = decide(B2B, level, resumed, DAY + timedelta(days=20))
    assert after.send is not None and after.send.key == "02"


def test_a_phase_is_not_repeated_for_a_debtor_whose_only_debt_that_reached_it_is_paused():
    level = Level("after", DAY, 0)  # consumer "after" repeats every 10 days
    young = (DAY + timedelta(days=20), 8_000)  # not due yet, not paused
    old = (DAY - timedelta(days=5), 8_000)
    on = DAY + timedelta(days=10)
    assert decide(CONSUMER, level, summarize(CONSUMER, [young, old], on), on).send is not None
    held = decide(CONSUMER, level, summarize(CONSUMER, [young], on, paused=[old]), on)
    assert held.send is None and held.level == level


def test_each_item_shows_the_highest_phase_it_reached():
    assert reached_phase(B2B, DAY - timedelta(days=31), 100, DAY).key == "03"  # type: ignore[union-attr]
    assert reached_phase(B2B, DAY - timedelta(days=70), 100, DAY).key == "04"  # type: ignore[union-attr]
    assert reached_phase(B2B, DAY + timedelta(days=30), 100, DAY) is None


invoices = st.lists(
    st.tuples(st.integers(-20, 150), st.integers(1, 20_000), st.integers(0, 200)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    invoices=invoices,
    skipped=st.sets(st.integers(0, 120), max_size=60),
    policy=st.sampled_from([B2B, CONSUMER]),
)
def test_a_debtor_is_told_one_phase_a_day_climbing_step_by_step_and_never_down_while_unpaid(
    invoices: list[tuple[int, int, int]], skipped: set[int], policy: Policy
) -> None:
    """Invoices (days overdue at the start, balance, day paid), runs on random days."""
    items = [(DAY - timedelta(days=age), bal) for age, bal, _ in invoices]
    paid: dict[date, set[int]] = {}
    for i, (_, _, when) in enumerate(invoices):
        paid.setdefault(DAY + timedelta(days=when), set()).add(i)
    days = [DAY + timedelta(days=n) for n in range(121) if n not in skipped]
    sent = run_days(policy, items, days, paid)
    order = keys(policy)
    assert len({day for day, _, _ in sent}) == len(sent)  # one claim a day at most
    phases = {p.key: p for p in policy.phases}
    level = None
    level_day = None
    for day, key, repeat in sent:
        i = order.index(key)
        if level is not None and (i < level or (i == level and repeat == 0)):
            # Going down (or back to the same phase afresh) only starts a new episode: the
            # debt that had reached the old level is all paid.
            reached_by = level_day - timedelta(days=policy.phases[level].offset_days)
            balances = [
                b if all(day < p for p in (d for d, s in paid.items() if n in s)) else 0
                for n, (_, b) in enumerate(items)
            ]
            assert all(
                due > reached_by or bal == 0 for (due, _), bal in zip(items, balances, strict=True)
            )
        elif level is not None and i > level:
            # Step by step: every phase jumped over is one that is only sent on its own day,
            # and the gap since the previous phase has passed.
            assert all(not policy.phases[j].catch_up for j in range(level + 1, i)), sent
            assert (day - level_day).days >= phases[key].offset_days - policy.phases[
                level
            ].offset_days
        elif level is not None and i == level:
            assert phases[key].repeat_every_days
        if phases[key].block_account and repeat == 0:
            assert level == i - 1, "a block always follows the phase just below it"
        level, level_day = i, day
