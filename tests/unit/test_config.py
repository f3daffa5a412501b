"""cobro.yaml validation: every problem named by file, line and field."""

from __future__ import annotations

from importlib import resources

import pytest

from cobro.config import parse_config
from cobro.errors import ConfigError

STARTER = (resources.files("cobro") / "starter" / "cobro.yaml").read_text(encoding="utf-8")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cobro.yaml")
    return [str(p) for p in exc.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_starter_configuration_is_valid() -> None:
    config = parse_config(STARTER)
    assert [p.key for p in config.policy("b2b").phases] == ["00", "01", "02", "03", "04", "05"]
    assert [p.offset_days for p in config.policy("consumer").phases] == [-3, 0, 5]


def test_bad_moment_is_reported_with_file_line_and_field() -> None:
    text = STARTER.replace("when: 15 days after due", "when: fifteen days later")
    line = line_of(text, "fifteen days later")
    assert problems(text) == [
        f"cobro.yaml:{line}: policies.b2b.phases.2.when: 'fifteen days later' is not a moment;"
        " write 'N days before due', 'on due' or 'N days after due'"
    ]


def test_every_problem_is_listed_not_only_the_first() -> None:
    text = STARTER.replace('color: "#0b5394"', "color: blue").replace(
        "timezone: Europe/Madrid", "timezone: Mars/Olympus"
    )
    found = problems(text)
    assert len(found) == 2
    assert any("company.timezone: unknown time zone 'Mars/Olympus'" in p for p in found)
    assert any(
        f"cobro.yaml:{line_of(text, 'color: blue')}: company.branding.color" in p for p in found
    )


def test_unknown_field_is_refused() -> None:
    text = STARTER.replace("  max_catch_up_days: 30", "  max_catch_up_dayz: 30")
    [p] = problems(text)
    assert p.startswith(
        f"cobro.yaml:{line_of(text, 'max_catch_up_dayz')}: company.max_catch_up_dayz"
    )


def test_invalid_sender_address_is_refused() -> None:
    text = STARTER.replace("email: cobros@demo.example", "email: cobros-at-demo")
    [p] = problems(text)
    assert "company.sender.email" in p and "not a valid sender address" in p


def test_two_phases_on_the_same_day_are_refused() -> None:
    text = STARTER.replace("when: 15 days after due", "when: 7 days after due")
    [p] = problems(text)
    assert "phases '01' and '02' fall on the same day" in p


def test_assignment_to_an_unknown_policy_is_refused() -> None:
    text = STARTER.replace("  - policy: b2b\n", "  - policy: wholesale\n")
    [p] = problems(text)
    assert "assign: policy 'wholesale' is not defined" in p


def test_invalid_yaml_names_the_line() -> None:
    text = STARTER.replace("  name: Distribuciones Demo S.L.", "  name: [unclosed")
    [p] = problems(text)
    assert p.startswith("cobro.yaml:") and "not valid YAML" in p


def test_before_and_on_due_phases_do_not_catch_up_by_default_after_due_phases_do() -> None:
    config = parse_config(STARTER)
    by_key = {p.key: p for p in config.policy("consumer").phases}
    assert not by_key["before"].catch_up and not by_key["due"].catch_up
    assert by_key["after"].catch_up


def test_min_balance_is_converted_to_minor_units_of_the_company_currency() -> None:
    config = parse_config(STARTER)
    assert config.policy("b2b").phase("05").min_balance_minor == 5000


def test_a_key_given_twice_is_refused_not_silently_overridden() -> None:
    text = STARTER + "\ndefault_policy: b2b\n"
    [p] = problems(text)
    assert p == f"cobro.yaml:{len(text.splitlines())}: default_policy: is given twice; keep one"


def test_an_unquoted_time_is_refused_rather_than_read_as_minutes() -> None:
    text = STARTER.replace('send_time: "09:00"', "send_time: 9:00")
    [p] = problems(text)
    assert "company.send_time" in p and 'a time is written in quotes as "HH:MM"' in p


def test_an_invalid_reply_to_address_is_refused() -> None:
    text = STARTER.replace("reply_to: administracion@demo.example", "reply_to: Admin <a@b>")
    [p] = problems(text)
    assert "company.reply_to" in p and "not a valid email address" in p


def test_a_policy_may_not_take_a_reserved_name() -> None:
    text = STARTER.replace("  consumer:\n", "  upcoming:\n").replace(
        "default_policy: consumer", "default_policy: upcoming"
    )
    assert any("policy name 'upcoming' is reserved" in p for p in problems(text))


EMAIL_COST = "    cost: 0.0005                 # per message, in the company currency\n"
UPCOMING = "    channels: [email]            # in order of preference, of email, sms and push\n"
SMS = '  sms:\n    account_sid: AC0123456789abcdef0123456789abcdef\n    sender: "+34910000000"\n'


def test_a_channel_used_but_not_configured_is_refused() -> None:
    text = STARTER.replace(UPCOMING, "    channels: [sms, email]\n")
    [p] = problems(text)
    assert "subscriptions.upcoming_charge.channels: 'sms' is used but channels.sms" in p


def test_configured_sms_channel_is_accepted_and_a_bad_sender_is_refused() -> None:
    ok = STARTER.replace(EMAIL_COST, EMAIL_COST + SMS).replace(UPCOMING, "    channels: [sms]\n")
    config = parse_config(ok)
    assert config.channels.sms is not None and config.channels.sms.auth_token_env == (
        "TWILIO_AUTH_TOKEN"
    )
    assert config.subscriptions.upcoming_charge.channels == ["sms"]
    bad = ok.replace('sender: "+34910000000"', 'sender: "0034 91 000"')
    [p] = problems(bad)
    assert f"cobro.yaml:{line_of(bad, '0034 91 000')}: channels.sms.sender" in p
    assert "is not an E.164 number" in p


def test_push_subject_must_be_mailto_or_a_site_address() -> None:
    def with_subject(subject: str) -> str:
        return STARTER.replace(EMAIL_COST, EMAIL_COST + f"  push:\n    subject: {subject}\n")

    assert parse_config(with_subject("mailto:cobros@demo.example")).channels.push is not None
    assert parse_config(with_subject("https://demo.example")).channels.push is not None
    [p] = problems(with_subject("https://demo.example/contact"))
    assert "channels.push.subject" in p and "without a path" in p


def test_a_phase_may_list_sms_and_push_in_order_of_preference() -> None:
    text = STARTER.replace(EMAIL_COST, EMAIL_COST + SMS).replace(
        "template: b2b_00", "template: b2b_00\n        channels: [sms, email]", 1
    )
    phase = parse_config(text).policy("b2b").phases[0]
    assert phase.channels == ("sms", "email")


def test_smtp_port_host_and_timeout_out_of_range_are_refused_with_their_lines() -> None:
    text = (
        STARTER.replace("port: 587", "port: 99999")
        .replace("host: capture ", "host: mail server.example ")
        .replace("      connections: 4\n", "      connections: 4\n      timeout_s: 0\n")
    )
    found = problems(text)
    assert any(
        p.startswith(f"cobro.yaml:{line_of(text, 'port: 99999')}: channels.email.smtp.port")
        and "65535" in p
        for p in found
    ), found
    assert any(
        p.startswith(f"cobro.yaml:{line_of(text, 'mail server.example')}: channels.email.smtp.host")
        for p in found
    ), found
    assert any(
        p.startswith(f"cobro.yaml:{line_of(text, 'timeout_s: 0')}: channels.email.smtp.timeout_s")
        for p in found
    ), found


def test_dispatch_retry_time_and_deadlines_are_checked() -> None:
    text = STARTER.replace(
        "default_policy: consumer",
        "dispatch:\n  retry_hours: 0\n  connection_deadline_s: 5\ndefault_policy: consumer",
    )
    (p,) = problems(text)
    assert p.startswith(f"cobro.yaml:{line_of(text, 'retry_hours: 0')}: dispatch.retry_hours")
    fine = parse_config(text.replace("retry_hours: 0", "retry_hours: 24"))
    assert fine.dispatch.retry_hours == 24 and fine.dispatch.connection_deadline_s == 5


def test_attach_statement_goes_with_email_phases_that_show_the_debt() -> None:
    attached = STARTER.replace(
        "        template: b2b_01\n        mode: full\n",
        "        template: b2b_01\n        mode: full\n        attach_statement: true\n",
    )
    config = parse_config(attached)
    assert config.policy("b2b").phases[1].attach_statement
    assert not config.policy("b2b").phases[0].attach_statement

    link = STARTER.replace(
        "        template: b2b_04\n        mode: link\n",
        "        template: b2b_04\n        mode: link\n        attach_statement: true\n",
    )
    (found,) = problems(link)
    phase = line_of(link, 'key: "04"')
    assert f"cobro.yaml:{phase}: policies.b2b.phases.4" in found
    assert "attach_statement does not go with mode: link" in found

    no_email = STARTER.replace(
        "        template: reminder_due\n        mode: full\n",
        "        template: reminder_due\n        mode: full\n        channels: [push]\n"
        "        attach_statement: true\n",
    ).replace("\npolicies:\n", "\n  push:\n    subject: mailto:a@demo.example\n\npolicies:\n")
    assert any(
        "attach_statement needs email among the phase's channels" in p for p in problems(no_email)
    )


def test_attach_statement_goes_with_debt_notices_only() -> None:
    assert parse_config(STARTER).action("statement").attach_statement  # a debt notice
    task = STARTER.replace(
        '    due_time: "13:00"\n', '    due_time: "13:00"\n    attach_statement: true\n'
    )
    (found,) = problems(task)
    assert "actions.1: attach_statement goes with debt notices (type: debt_notice)" in found
    assert "not with a task" in found


def test_a_phase_and_an_action_are_named_per_language_where_given() -> None:
    from cobro.evidence.history import step_name

    config = parse_config(STARTER)
    assert step_name(config, "b2b/01") == "Overdue and unpaid for 7 days"
    assert step_name(config, "b2b/01", "es") == "Vencida e impagada desde hace 7 días"
    assert step_name(config, "b2b/01", "fr") == "Overdue and unpaid for 7 days"  # no French
    assert step_name(config, "action/statement", "es").startswith("Estado de cuenta")
    assert step_name(config, "action/call-large-debtors", "es") == (
        "Call businesses with large overdue debt"  # no Spanish given
    )


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        ("{ES: Vencida}", "'ES' is not a language code (es, en)"),
        ("{es: ' '}", "the name in 'es' is empty"),
        ("{es: [Vencida]}", "Input should be a valid string"),
    ],
)
def test_a_name_in_another_language_is_checked(names: str, problem: str) -> None:
    text = STARTER.replace(
        "        names:\n          es: Vencida e impagada desde hace 7 días\n",
        f"        names: {names}\n",
    )
    assert text != STARTER
    [p] = problems(text)
    assert p.startswith(
        f"cobro.yaml:{line_of(text, f'names: {names}')}: policies.b2b.phases.1.names"
    )
    assert problem in p
