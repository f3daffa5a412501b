"""What the message log's recipient filter looks for: a complete address exactly (an email
address in lower case, a phone number as E.164), else the start of one."""

from __future__ import annotations

import pytest

from cobro.engine.message_log import recipient_wanted


@pytest.mark.parametrize(
    ("typed", "region", "wanted"),
    [
        ("AP@Acme-Industrial.example", "ES", ("ap@acme-industrial.example", True)),
        ("  ap@acme.example ", None, ("ap@acme.example", True)),
        ("ap@acme", "ES", ("ap@acme", False)),
        ("ap@acme.", "ES", ("ap@acme.", False)),
        ("@acme.example", "ES", ("@acme.example", False)),
        ("ap@", "ES", ("ap@", False)),
        ("600 111 222", "ES", ("+34600111222", True)),
        ("+34 600-111-222", None, ("+34600111222", True)),
        ("(212) 555-0199", "US", ("+12125550199", True)),
        ("+3460", "ES", ("+3460", False)),
        ("600 111", "ES", ("600 111", False)),
        ("Carla", "ES", ("carla", False)),
    ],
)
def test_a_complete_address_is_looked_for_exactly_else_its_start(
    typed: str, region: str | None, wanted: tuple[str, bool]
) -> None:
    assert recipient_wanted(typed, region) == wanted
