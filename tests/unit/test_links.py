"""Portal link tokens: made with an instant, read back with the age, company and shape checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from cobro.engine.links import LinkRefused, PortalLink, link_url, make_token, read_token

SECRET = "s3cret-for-tests"
AT = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def read(token: str, now: datetime = AT + timedelta(hours=1), company: str = "demo") -> PortalLink:
    return read_token(SECRET, token, company, now, 30)


def refusal(token: str, **kwargs: object) -> str:
    with pytest.raises(LinkRefused) as caught:
        read(token, **kwargs)  # type: ignore[arg-type]
    return caught.value.reason


def test_a_token_reads_back_as_the_claim_it_was_made_for() -> None:
    token = make_token(SECRET, "demo", "C1", 42, AT)
    assert read(token) == PortalLink("demo", "C1", 42, AT)
    assert read(token).expires_at(30) == AT + timedelta(days=30)


def test_a_token_is_stamped_with_the_instant_given_not_the_clock() -> None:
    assert make_token(SECRET, "demo", "C1", 42, AT) == make_token(SECRET, "demo", "C1", 42, AT)
    later = make_token(SECRET, "demo", "C1", 42, AT + timedelta(seconds=5))
    assert later != make_token(SECRET, "demo", "C1", 42, AT)


def test_a_token_expires_exactly_max_age_days_after_it_was_issued() -> None:
    token = make_token(SECRET, "demo", "C1", 42, AT)
    assert read(token, now=AT + timedelta(days=30, seconds=-1)).outbox_id == 42
    assert refusal(token, now=AT + timedelta(days=30)) == "expired"


def test_a_tampered_or_malformed_token_is_invalid() -> None:
    token = make_token(SECRET, "demo", "C1", 42, AT)
    assert refusal(token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) == "invalid"
    assert refusal(make_token("other secret", "demo", "C1", 42, AT)) == "invalid"
    for bad in ("", "abc", "a.b.c", "x" * 601, token + "."):
        assert refusal(bad) == "invalid", bad


def test_an_expired_token_that_was_also_altered_is_invalid_not_expired() -> None:
    token = make_token(SECRET, "demo", "C1", 42, AT)
    assert refusal(token[:-1] + "x", now=AT + timedelta(days=90)) == "invalid"


def test_a_token_for_another_company_is_invalid() -> None:
    assert refusal(make_token(SECRET, "other", "C1", 42, AT)) == "invalid"


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        {"co": "demo", "cu": "C1"},
        {"co": "demo", "cu": 7, "ob": 1},
        {"co": "demo", "cu": "C1", "ob": True},
    ],
)
def test_a_signed_payload_that_names_no_claim_is_invalid(payload: object) -> None:
    token = URLSafeTimedSerializer(SECRET, salt="cobro.portal").dumps(payload)
    assert refusal(token, now=datetime.now(UTC)) == "invalid"


def test_the_link_is_the_portal_url_and_the_token() -> None:
    assert link_url("https://pay.example/portal/", "T") == "https://pay.example/portal/T"
    assert link_url("https://pay.example/portal", "T") == "https://pay.example/portal/T"
