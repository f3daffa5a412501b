"""SMS text: GSM-7 or UCS-2 segments, accents GSM-7 lacks, a long text shortened, never the link."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cobro.channels.sms import fit_sms, smart_encode, sms_segments, sms_units
from fakes.twilio import count_segments

LINK = "https://pagos.demo.example/portal/eyJjbyI6ImRlbW8ifQ.abc"


def test_gsm_text_takes_160_characters_a_segment_then_153() -> None:
    assert sms_units("a" * 160) == ("GSM-7", 160)
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_segments("a" * 306) == 2
    assert sms_segments("a" * 307) == 3


def test_extension_characters_count_twice() -> None:
    assert sms_units("€" * 80) == ("GSM-7", 160)
    assert sms_segments("€" * 81) == 2


def test_one_character_outside_gsm_makes_the_message_ucs2() -> None:
    assert sms_units("Привет") == ("UCS-2", 6)
    assert sms_segments("a" * 69 + "😀") == 2  # an emoji is two UTF-16 units: 71 > 70
    assert sms_segments("a" * 70 + "я") == 2


def test_accents_gsm_lacks_are_dropped_and_the_rest_kept() -> None:
    assert smart_encode("suscripción aquí “ya” — ñ ü é") == 'suscripcion aqui "ya" - ñ ü é'
    assert smart_encode("Привет 😀") == "Привет 😀"  # no GSM-7 form: left as it is


def test_a_long_text_is_shortened_and_the_link_kept_whole() -> None:
    body = fit_sms("Le recordamos su deuda pendiente. " * 20, LINK, 2)
    assert body.endswith("... " + LINK)
    assert sms_segments(body) == 2
    assert fit_sms("Corto.", LINK, 1) == f"Corto. {LINK}"


def test_spaces_and_no_break_spaces_are_folded() -> None:
    assert fit_sms("39,90\xa0€\n  de  su tarifa", None, 1) == "39,90 € de su tarifa"


@given(st.text(min_size=1, max_size=600), st.integers(min_value=1, max_value=4))
def test_fitted_text_never_exceeds_its_segments(text: str, max_segments: int) -> None:
    body = fit_sms(text, LINK, max_segments)
    assert LINK in body
    if sms_segments(LINK) <= max_segments - 1 or sms_segments("... " + LINK) <= max_segments:
        assert sms_segments(body) <= max_segments
    # Twilio's own count (the local server's, per its documented rules) agrees with ours.
    assert count_segments(body) == sms_segments(body)
