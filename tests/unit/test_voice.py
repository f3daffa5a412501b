"""Automated calls: what a call says (amounts and dates as a voice reads them), its TwiML,
what Twilio's call statuses mean, and how ``channels.voice`` and a phase's ``call:`` are
checked."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest

from cobro.channels.voice import call_twiml
from cobro.config import parse_config
from cobro.domain.delivery import DeliveryState
from cobro.errors import ConfigError, TemplateError
from cobro.render.templates import TemplateSet, spoken_money
from cobro.web.callbacks.twilio import call_state

STARTER = (resources.files("cobro") / "starter" / "cobro.yaml").read_text(encoding="utf-8")
EMAIL_COST = "    cost: 0.0005                 # per message, in the company currency\n"
SMS = '  sms:\n    account_sid: AC0123456789abcdef0123456789abcdef\n    sender: "+34910000000"\n'

VOICE = (
    '  voice:\n    account_sid: AC0123456789abcdef0123456789abcdef\n    caller_id: "+34910000000"\n'
)
CALLING = "template: reminder_after\n        channels: [voice, email]"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cobro.yaml")
    return [str(p) for p in exc.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "spoken"),
    [
        ("1234.50", "EUR", "es_ES", "1234 euros con 50 céntimos"),
        ("1234.50", "EUR", "en_US", "1234 euros and 50 cents"),
        ("1.01", "EUR", "es_ES", "1 euro con 1 céntimo"),
        ("1.01", "EUR", "en_GB", "1 euro and 1 cent"),
        ("20.05", "USD", "es_MX", "20 dólares estadounidenses con 5 centavos"),
        ("12000", "EUR", "es", "12000 euros"),
        ("1500", "JPY", "en_US", "1500 Japanese yen"),
    ],
)
def test_amounts_are_written_as_a_voice_reads_them(
    amount: str, currency: str, locale: str, spoken: str
) -> None:
    assert spoken_money(Decimal(amount), currency, locale) == spoken


def test_a_language_without_spoken_words_gets_the_written_amount() -> None:
    assert spoken_money(Decimal("1234.5"), "EUR", "fr_FR") == "1\u202f234,50\xa0€"


def test_the_twiml_speaks_in_the_language_and_voice_and_escapes_the_text() -> None:
    twiml = call_twiml(
        'Hola Tom & <Jerry> "S.L."',
        language="es",
        speech="es-ES",
        voice="Polly.Lucia",
        gather_url="https://cobro.example/callbacks/shop/twilio/gather?ref=ab&x=1",
    )
    assert '<Say language="es-ES" voice="Polly.Lucia">Hola Tom &amp; &lt;Jerry&gt;' in twiml
    assert '<Gather action="https://cobro.example/callbacks/shop/twilio/gather?ref=ab&amp;x=1"' in (
        twiml
    )
    assert "Para recibir el enlace de pago por SMS, pulse 1." in twiml
    assert "<Jerry>" not in twiml
    plain = call_twiml("Hello", language="en", speech="en-US", voice=None, gather_url=None)
    assert plain.endswith('<Say language="en-US">Hello</Say><Hangup /></Response>')


@pytest.mark.parametrize(
    ("status", "answered_by", "code", "voicemail", "state", "detail"),
    [
        ("completed", "human", None, False, DeliveryState.DELIVERED, "answered by a person"),
        ("completed", None, None, False, DeliveryState.DELIVERED, "answered"),
        ("completed", "machine_start", None, False, DeliveryState.TEMPORARY_FAILURE, None),
        ("completed", "machine_end_beep", None, True, DeliveryState.DELIVERED, None),
        ("completed", "machine_start", None, True, DeliveryState.TEMPORARY_FAILURE, None),
        ("completed", "fax", None, False, DeliveryState.PERMANENT_FAILURE, "answered by a fax"),
        ("busy", None, None, False, DeliveryState.TEMPORARY_FAILURE, "busy"),
        ("no-answer", None, None, False, DeliveryState.TEMPORARY_FAILURE, "no answer"),
        ("failed", None, "13224", False, DeliveryState.PERMANENT_FAILURE, None),
        ("failed", None, None, False, DeliveryState.TECHNICAL_FAILURE, "failed"),
        ("canceled", None, None, False, DeliveryState.TECHNICAL_FAILURE, "canceled"),
        ("ringing", None, None, False, None, "ringing"),
        ("in-progress", "human", None, False, None, "in-progress"),
    ],
)
def test_what_each_call_status_means(
    status: str,
    answered_by: str | None,
    code: str | None,
    voicemail: bool,
    state: DeliveryState | None,
    detail: str | None,
) -> None:
    found, words = call_state(status, answered_by, code, voicemail)
    assert found == state
    if detail is not None:
        assert words == detail


def test_a_calling_phase_is_accepted_with_its_call_settings() -> None:
    text = STARTER.replace(EMAIL_COST, EMAIL_COST + SMS + VOICE).replace(
        "template: reminder_after",
        CALLING + "\n        call: {attempts: 2, retry_after_minutes: 30, max_per_7_days: 4}",
    )
    config = parse_config(text)
    assert config.policy("consumer").phases[-1].channels == ("voice", "email")
    call = config.call_settings("consumer/after")
    assert (call.attempts, call.retry_after_minutes, call.max_per_7_days) == (2, 30, 4)
    assert config.call_settings("consumer/due").attempts == 3  # the defaults
    assert config.channels.voice is not None
    assert config.channels.voice.speech("es") == ("es-ES", "Polly.Lucia")


def test_calls_need_channels_voice_and_a_number_to_call_from() -> None:
    [p] = problems(STARTER.replace("template: reminder_after", CALLING))
    assert "'voice' is used but channels.voice is not configured" in p
    bad = STARTER.replace(EMAIL_COST, EMAIL_COST + SMS + VOICE.replace("+34910000000", "ACME"))
    [p] = problems(bad)
    assert p.startswith(f"cobro.yaml:{line_of(bad, 'ACME')}: channels.voice.caller_id")
    assert "is not an E.164 number" in p


def test_press_for_sms_needs_the_sms_channel() -> None:
    text = STARTER.replace(EMAIL_COST, EMAIL_COST + VOICE)
    [p] = problems(text)
    line = text.splitlines().index("channels:") + 1  # the mapping under it starts a line below
    assert p.startswith(f"cobro.yaml:{line + 1}: channels: voice.press_for_sms")
    assert "channels.sms is not configured" in p
    off = STARTER.replace(EMAIL_COST, EMAIL_COST + VOICE + "    press_for_sms: false\n")
    assert parse_config(off).channels.voice is not None


def test_call_settings_are_checked_where_they_are_written() -> None:
    base = STARTER.replace(EMAIL_COST, EMAIL_COST + SMS + VOICE)
    [p] = problems(
        base.replace("template: reminder_after", CALLING + "\n        call: {attempts: 0}")
    )
    assert "policies.consumer.phases.2.call.attempts" in p
    [p] = problems(base.replace("template: reminder_after", "template: x\n        call: {}"))
    assert "call: settings need voice among the phase's channels" in p
    [p] = problems(base.replace("    caller_id:", "    voices: {es: Robot}\n    caller_id:"))
    assert "channels.voice.voices" in p and "'Robot' is not a Twilio voice" in p


def test_a_workspace_layout_without_the_voice_part_is_a_clear_template_error(
    tmp_path: Path,
) -> None:
    bundled = (resources.files("cobro.render") / "templates" / "_layout.j2").read_text()
    start = bundled.index('{%- elif part == "voice" -%}')
    old = bundled[:start] + bundled[bundled.index('{%- elif part == "text" -%}') :]
    (tmp_path / "_layout.j2").write_text(old)
    context = {
        "locale": "es_ES",
        "company": {"name": "ACME", "color": "#000000", "logo_url": None, "footer": None},
        "customer": {"name": "Lucía", "external_id": "C1"},
        "recipient": {"name": "Lucía", "internal": False, "staff_copy": False},
        "phase": {"key": "after", "name": "Overdue"},
        "mode": "full",
        "items": [],
        "totals": [],
        "pay_url": None,
        "crm_url": None,
        "today": date(2025, 3, 11),
        "title": None,
        "text": None,
        "notice": {},
    }
    assert (
        TemplateSet()
        .render_voice("reminder_after", "es", context)
        .text.startswith("Hola Lucía. Le llamamos")
    )
    with pytest.raises(TemplateError) as exc:
        TemplateSet(tmp_path).render_voice("reminder_after", "es", context)
    assert "reminder_after.es.j2: the layout has no voice part" in str(exc.value)
