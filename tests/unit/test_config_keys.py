"""An unknown key in cobro.yaml: one problem, with the nearest valid key."""

from __future__ import annotations

from importlib import resources

import pytest

from cobro.config import parse_config
from cobro.errors import ConfigError

STARTER = (resources.files("cobro") / "starter" / "cobro.yaml").read_text(encoding="utf-8")


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cobro.yaml")
    return [(p.field, p.problem) for p in exc.value.problems]


@pytest.mark.parametrize(
    ("wrong", "right", "field"),
    [
        ("  timezone: Europe/Madrid", "  timezon: Europe/Madrid", "company.timezon"),
        ("      starttls: false", "      startls: false", "channels.email.smtp.startls"),
        (
            "        when: 7 days after due",
            "        whne: 7 days after due",
            "policies.b2b.phases.1.whne",
        ),
        ("channels:", "chanels:", "chanels"),
    ],
)
def test_a_misspelt_key_suggests_the_nearest_valid_one(wrong: str, right: str, field: str) -> None:
    text = STARTER.replace(wrong, right, 1)
    key = wrong.split(":")[0].strip()
    assert problems(text) == [(field, f"unknown key; did you mean `{key}`?")]


def test_a_misspelt_required_key_is_one_problem_not_two() -> None:
    text = STARTER.replace("  name: Distribuciones Demo S.L.", "  nmae: Distribuciones Demo S.L.")
    assert problems(text) == [("company.nmae", "unknown key; did you mean `name`?")]


def test_a_key_like_no_other_lists_the_keys_accepted_there() -> None:
    text = STARTER.replace("  currency: EUR", "  currency: EUR\n  zzz: 1", 1)
    ((field, problem),) = problems(text)
    assert field == "company.zzz"
    assert problem.startswith("unknown key; the keys here are: ")
    assert "timezone" in problem and "send_time" in problem


def test_a_required_key_that_is_simply_missing_is_still_reported() -> None:
    text = STARTER.replace("  name: Distribuciones Demo S.L.\n", "", 1)
    assert problems(text) == [("company.name", "Field required")]
