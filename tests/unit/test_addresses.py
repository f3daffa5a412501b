"""The plain-address check gives what email-validator gives, and leaves it every other case."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from cobro.domain.addresses import ascii_address, plain_address


def library(value: str) -> str | EmailNotValidError:
    """email-validator's answer, as the configuration asks for it."""
    try:
        return str(
            validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email
        )
    except EmailNotValidError as exc:
        return exc


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cobros@demo.example", "cobros@demo.example"),
        ("Ana.Lopez+facturas@Mail.Example.COM", "Ana.Lopez+facturas@mail.example.com"),
        ("INFO@example.com", "info@example.com"),  # RFC 2142 role mailboxes in lowercase
        ("a@b.co", "a@b.co"),
        ("o'brien@x-y.example", "o'brien@x-y.example"),
        ("1@2.c", "1@2.c"),
    ],
)
def test_a_plain_address_is_given_as_email_validator_gives_it(value: str, expected: str) -> None:
    assert plain_address(value) == expected
    assert library(value) == expected
    assert ascii_address(value, "refused") == expected


@pytest.mark.parametrize(
    "value",
    [
        "someone@example.test",  # special-use names
        "someone@host.localhost",
        "someone@localhost",
        "someone@xn--p1ai.example",  # Punycode
        "someone@ab--cd.example",  # RFC 5890's reserved labels
        "someone@example.123",  # no top-level domain ends with a digit
        "someone@-example.com",
        "someone@example-.com",
        "someone@example..com",
        "someone@example.com.",
        ".someone@example.com",
        "some..one@example.com",
        "some one@example.com",
        '"quoted"@example.com',
        "Name <someone@example.com>",
        "sömeone@example.com",
        "someone@exämple.com",
        "someone",
        "a@b@example.com",
        "",
        "x" * 64 + "@" + "y" * 64 + ".com",  # a label over 63 characters
        "x" * 250 + "@b.co",  # over 254 characters
    ],
)
def test_anything_else_is_left_to_email_validator(value: str) -> None:
    assert plain_address(value) is None
    expected = library(value)
    if isinstance(expected, str):
        assert ascii_address(value, "refused") == expected
    else:
        with pytest.raises(ValueError) as refused:
            ascii_address(value, "refused")
        assert str(refused.value) == f"refused: {expected}"


ATEXT = "abcXYZ019_!#$%&'*+-/=?^`{|}~"
ODD = ' ."@<>\\()[],:;é\t'


def _local(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(["info", "Postmaster", "WWW", "noc", "Sales", "x" * rng.randint(60, 70)])
    chars = ATEXT + ("." * 4 + ODD if rng.random() < 0.3 else ".")
    return "".join(rng.choice(chars) for _ in range(rng.randint(0, 12)))


def _domain(rng: random.Random) -> str:
    label_chars = "abcxyzABCXYZ0189-" + ("--_é. " if rng.random() < 0.2 else "")
    labels = [
        "".join(rng.choice(label_chars) for _ in range(rng.choice([0, 1, 2, 5, 9, 62, 63, 64])))
        for _ in range(rng.randint(0, 3))
    ]
    tld = rng.choice(
        ["com", "COM", "es", "c", "x1", "1", "example", "test", "local", "onion", "arpa",
         "invalid", "localhost", "xn--p1ai", "co-m", "", "-com", "com-"]
    )  # fmt: skip
    text = ".".join([*labels, tld])
    return text if rng.random() < 0.97 else text + "."


def test_the_two_agree_on_generated_addresses() -> None:
    rng = random.Random(20261204)
    taken = accepted = 0
    for _ in range(6000):
        value = f"{_local(rng)}@{_domain(rng)}"
        if rng.random() < 0.02:
            value = value.replace("@", "@@")
        plain = plain_address(value)
        expected = library(value)
        if plain is not None:
            taken += 1
            assert plain == expected, value
        if isinstance(expected, str):
            accepted += 1
            assert ascii_address(value, "refused") == expected, value
        else:
            with pytest.raises(ValueError) as refused:
                ascii_address(value, "refused")
            assert str(refused.value) == f"refused: {expected}", value
    # the plain check does take most of the addresses email-validator accepts (the rest
    # have "--" or non-ASCII domains)
    assert taken > 250 and taken > 0.6 * accepted, (taken, accepted)
