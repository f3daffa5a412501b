"""Webhook building blocks: URLs and event types checked, secrets in the Standard Webhooks
form, headers a ``standardwebhooks`` receiver verifies, and the ``webhook:`` option of
phases and scheduled actions."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from importlib import resources

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from cobro.config import parse_config
from cobro.engine.webhook_dispatch import body_of, signed_headers
from cobro.engine.webhooks import (
    EVENT_TYPES,
    EVERY,
    WebhookError,
    check_name,
    check_url,
    instant_ref,
    money,
    new_secret,
    parse_events,
    parse_step,
    ticket_endpoints,
)
from cobro.errors import ConfigError

STARTER = (resources.files("cobro") / "starter" / "cobro.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "url",
    [
        "https://helpdesk.example/hooks/cobro",
        "http://127.0.0.1:8080/in",
        "https://[::1]:8443/in",
        "https://hooks.example.com/in?token=abc",
    ],
)
def test_http_and_https_urls_with_a_host_are_accepted(url: str) -> None:
    assert check_url(f"  {url} ") == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "the URL is empty"),
        ("ftp://files.example/in", "starts with https://"),
        ("javascript:alert(1)", "starts with https://"),
        ("helpdesk.example/hooks", "starts with https://"),
        ("https://", "the URL has no host"),
        ("https://user:hunter2@h.example/in", "carries a user name or password"),
        ("https://h.example/in#top", "has no #fragment"),
        ("https://h.example:99999/in", "is not a URL"),
        ("https://user:hunter2@h.example:99999/in", "is not a URL"),
        ("https://h.example/a b", "contains spaces"),
        ("https://exa mple.com/", "contains spaces"),
        ("https://bad_host!.example/", "is not a host name"),
        ("https://h.example/" + "a" * 2000, "at most 2000"),
    ],
)
def test_urls_that_cannot_receive_webhooks_are_refused_saying_why(url: str, problem: str) -> None:
    with pytest.raises(WebhookError, match=problem.replace("?", r"\?")) as exc:
        check_url(url)
    assert "hunter2" not in str(exc.value)  # a password in the URL is not echoed


def test_event_types_are_checked_and_deduplicated() -> None:
    assert parse_events("claim.sent, dispute.opened,claim.sent") == (
        "claim.sent",
        "dispute.opened",
    )
    assert parse_events(["task.created"]) == ("task.created",)
    assert parse_events(None) == (EVERY,)
    assert parse_events("*") == (EVERY,)
    with pytest.raises(WebhookError, match=r"unknown event type 'claim.snet' \(did you mean"):
        parse_events("claim.snet")
    with pytest.raises(WebhookError, match="no event types given"):
        parse_events(" , ")
    with pytest.raises(WebhookError, match="goes only to the endpoint a phase or action names"):
        parse_events("ticket.requested")
    assert len(EVENT_TYPES) == 10


def test_endpoint_names_are_short_words() -> None:
    assert check_name("help-desk_2") == "help-desk_2"
    for bad in ("", "help desk", "x" * 41, "ümlaut"):
        with pytest.raises(WebhookError):
            check_name(bad)


def test_a_secret_is_whsec_and_the_base64_of_32_random_bytes() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_signed_headers_are_verified_by_a_standard_webhooks_receiver() -> None:
    secret = new_secret()
    body = body_of({"body": {"type": "claim.sent", "data": {"amount": "10.00", "name": "Peña"}}})
    headers = signed_headers(secret, "msg_abc", datetime.now(UTC), body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers)["data"]["name"] == "Peña"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_other"})
    old = signed_headers(secret, "msg_abc", datetime(2020, 1, 1, tzinfo=UTC), body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, old)


def test_amounts_are_decimal_strings_with_their_currency() -> None:
    assert money(125050, "EUR") == {"amount": "1250.50", "currency": "EUR"}
    assert money(1200, "JPY") == {"amount": "1200", "currency": "JPY"}
    assert money(-5, "USD") == {"amount": "-0.05", "currency": "USD"}


def test_steps_and_instants() -> None:
    assert parse_step("webhook/12/claim.sent/345") == (12, "claim.sent", "345")
    assert parse_step("webhook/12/ticket.requested/claim-3") == (12, "ticket.requested", "claim-3")
    assert parse_step("b2b/00") is None
    assert parse_step("webhook/x/claim.sent/1") is None
    at = datetime(2026, 4, 5, 7, 0, 0, 123456, tzinfo=UTC)
    assert instant_ref(at) == "1775372400123456"


def test_phases_and_actions_name_the_endpoint_that_gets_a_ticket() -> None:
    text = STARTER.replace(
        "        template: b2b_04\n", "        template: b2b_04\n        webhook: helpdesk\n"
    ).replace(
        "    message: Call the customer about the overdue debt and agree a payment date\n",
        "    message: Call the customer about the overdue debt and agree a payment date\n"
        "    webhook: crm\n",
    )
    config = parse_config(text, "cobro.yaml")
    assert ticket_endpoints(config) == {"b2b/04": "helpdesk", "action/call-large-debtors": "crm"}
    assert config.action("call-large-debtors").webhook == "crm"


def test_a_webhook_name_that_cannot_be_an_endpoint_is_a_config_problem() -> None:
    text = STARTER.replace(
        "        template: b2b_04\n", "        template: b2b_04\n        webhook: help desk\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cobro.yaml")
    ((problem),) = exc.value.problems
    assert problem.field == "policies.b2b.phases.4.webhook"
    assert problem.line is not None


def test_a_policy_cannot_be_called_webhook() -> None:
    text = STARTER.replace("  consumer:\n", "  webhook:\n").replace(
        "default_policy: consumer", "default_policy: webhook"
    )
    with pytest.raises(ConfigError, match="reserved"):
        parse_config(text, "cobro.yaml")
