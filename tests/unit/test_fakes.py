"""The fake Twilio and Web Push services speak the real protocols: the real client libraries
(``twilio`` and ``pywebpush``) work against them unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from py_vapid import Vapid
from pywebpush import WebPushException, webpush
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from fakes.push import BrowserSubscription, FakePushService, PushReceived, vapid_keypair
from fakes.twilio import FakeTwilio, count_segments

TWILIO_API = "https://api.twilio.com"
SENDER = "+15005550006"
SUBJECT = "mailto:ops@example.com"

# -- Twilio -----------------------------------------------------------------------------------


class LocalTwilioHttpClient(TwilioHttpClient):  # type: ignore[misc]  # untyped library
    """The library's own HTTP client, sent to the fake instead of api.twilio.com."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        assert self.session is not None
        self.session.trust_env = False  # never through a proxy from the environment

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        assert url.startswith(TWILIO_API), url
        return super().request(method, self.base_url + url[len(TWILIO_API) :], *args, **kwargs)


@pytest.fixture
def tw() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def client_for(tw: FakeTwilio, token: str | None = None, account_sid: str | None = None) -> Client:
    return Client(
        tw.account_sid,
        token or tw.auth_token,
        account_sid=account_sid,
        http_client=LocalTwilioHttpClient(tw.url),
    )


def test_twilio_send_is_recorded_and_answered_like_twilio(tw: FakeTwilio) -> None:
    msg = client_for(tw).messages.create(
        to="+34600111222",
        from_=SENDER,
        body="Invoice 42 is due.",
        status_callback="https://cobro.example.com/sms/status",
    )
    assert msg.sid.startswith("SM") and len(msg.sid) == 34
    assert msg.status == "queued"
    assert msg.num_segments == "1"
    assert msg.to == "+34600111222" and msg.from_ == SENDER
    assert msg.body == "Invoice 42 is due."
    assert msg.direction == "outbound-api" and msg.api_version == "2010-04-01"
    assert msg.account_sid == tw.account_sid
    assert msg.error_code is None and msg.price is None and msg.price_unit == "USD"
    assert msg.uri == f"/2010-04-01/Accounts/{tw.account_sid}/Messages/{msg.sid}.json"
    assert msg.date_created is not None  # parsed from RFC 2822 by the library
    assert tw.messages == [
        {
            "sid": msg.sid,
            "to": "+34600111222",
            "from_": SENDER,
            "messaging_service_sid": None,
            "body": "Invoice 42 is due.",
            "num_segments": 1,
            "status_callback": "https://cobro.example.com/sms/status",
        }
    ]


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("Twenty ASCII chars!!", "1"),
        ("a" * 160, "1"),
        ("a" * 161, "2"),
        ("ñ" * 160, "1"),  # ñ is in the GSM-7 basic set
        ("€" * 80, "1"),  # extension characters take two septets
        ("€" * 81, "2"),
        ("a" * 306, "2"),
        ("a" * 307, "3"),
        ("Я" * 70, "1"),  # Cyrillic: UCS-2
        ("Я" * 71, "2"),
        ("😀" + "a" * 68, "1"),  # an emoji is two UTF-16 code units
        ("😀" + "a" * 69, "2"),
        ("Я" * 134, "2"),
        ("Я" * 135, "3"),
    ],
)
def test_twilio_counts_segments_like_twilio(tw: FakeTwilio, body: str, segments: str) -> None:
    msg = client_for(tw).messages.create(to="+34600111222", from_=SENDER, body=body)
    assert msg.num_segments == segments


def test_segments_never_split_a_character() -> None:
    # 152 septets then a two-septet character: it moves whole to the second part.
    assert count_segments("a" * 152 + "€" + "a" * 152) == 3
    assert count_segments("a" * 151 + "€" + "a" * 153) == 2
    # 66 code units then a surrogate pair: the pair moves whole.
    assert count_segments("Я" * 66 + "😀" + "Я" * 66) == 3
    assert count_segments("Я" * 65 + "😀" + "Я" * 67) == 2


def test_twilio_messaging_service_send(tw: FakeTwilio) -> None:
    service = "MG" + "0" * 32
    msg = client_for(tw).messages.create(to="+34600111222", messaging_service_sid=service, body="x")
    assert msg.status == "accepted" and msg.from_ is None
    assert msg.messaging_service_sid == service
    assert tw.messages[0]["messaging_service_sid"] == service
    assert tw.messages[0]["from_"] is None


def test_twilio_fetch_returns_the_stored_message(tw: FakeTwilio) -> None:
    client = client_for(tw)
    sent = client.messages.create(to="+34600111222", from_=SENDER, body="hello")
    tw.set_status(sent.sid, "delivered")
    fetched = client.messages(sent.sid).fetch()
    assert fetched.sid == sent.sid and fetched.body == "hello"
    assert fetched.status == "delivered" and fetched.date_sent is not None
    with pytest.raises(TwilioRestException) as err:
        client.messages("SM" + "f" * 32).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)


def test_twilio_invalid_number_is_refused(tw: FakeTwilio) -> None:
    with pytest.raises(TwilioRestException) as err:
        client_for(tw).messages.create(to="600111222", from_=SENDER, body="hello")
    assert (err.value.status, err.value.code) == (400, 21211)
    assert err.value.msg.endswith("The 'To' number 600111222 is not a valid phone number.")
    assert tw.messages == []


def test_twilio_per_number_refusal(tw: FakeTwilio) -> None:
    tw.refuse["+34600999999"] = (400, 21211, "The 'To' number +34600999999 is not valid.")
    tw.refuse["+34600888888"] = (400, 21610, "Attempt to send to unsubscribed recipient")
    client = client_for(tw)
    with pytest.raises(TwilioRestException) as err:
        client.messages.create(to="+34600999999", from_=SENDER, body="hello")
    assert (err.value.status, err.value.code) == (400, 21211)
    with pytest.raises(TwilioRestException) as err:
        client.messages.create(to="+34600888888", from_=SENDER, body="hello")
    assert (err.value.status, err.value.code) == (400, 21610)
    assert err.value.msg.endswith(": Attempt to send to unsubscribed recipient")
    client.messages.create(to="+34600111222", from_=SENDER, body="hello")
    assert [m["to"] for m in tw.messages] == ["+34600111222"]


def test_twilio_call_is_created_fetched_and_played_with_signed_callbacks(tw: FakeTwilio) -> None:
    client = client_for(tw)
    call = client.calls.create(
        to="+34600111222",
        from_=SENDER,
        twiml='<Response><Say language="es-ES">Hola &amp; adiós</Say></Response>',
        machine_detection="Enable",
        status_callback="http://127.0.0.1:9/status?ref=abc",
        status_callback_event=["initiated", "answered", "completed"],
    )
    assert call.sid.startswith("CA") and call.status == "queued"
    assert client.calls(call.sid).fetch().to == "+34600111222"
    [made] = tw.calls
    assert made["events"] == ["initiated", "answered", "completed"]
    assert made["machine_detection"] == "Enable"
    tw.call_outcomes["+34600111222"] = "answered"
    [played] = tw.play_calls()
    assert played["heard"] == ["Hola & adiós"]  # nobody listening: the answers are 0
    assert played["answers"] == [0, 0, 0]
    assert client.calls(call.sid).fetch().status == "completed"
    assert client.calls(call.sid).fetch().answered_by == "human"
    assert tw.play_calls() == []  # a call is played once


def test_twilio_call_records_how_its_twiml_and_callbacks_are_requested(tw: FakeTwilio) -> None:
    client = client_for(tw)
    client.calls.create(
        to="+34600111222",
        from_=SENDER,
        url="http://127.0.0.1:9/twiml?ref=abc",
        method="GET",
        status_callback="http://127.0.0.1:9/status?ref=abc",
        status_callback_method="POST",
        timeout=25,
    )
    client.calls.create(to="+34600111223", from_=SENDER, url="http://127.0.0.1:9/twiml")
    first, second = tw.calls
    assert (first["url"], first["method"]) == ("http://127.0.0.1:9/twiml?ref=abc", "GET")
    assert first["status_callback_method"] == "POST"
    assert first["timeout"] == 25
    assert (second["method"], second["status_callback_method"]) == (None, None)  # not sent


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "600111222", "from_": SENDER, "url": "https://x.example/t"}, 21211),
        ({"to": "+34600111222", "from_": "ACME", "url": "https://x.example/t"}, 21212),
        ({"to": "+34600111222", "from_": SENDER}, 21205),
    ],
)
def test_twilio_call_validation_errors(tw: FakeTwilio, fields: dict[str, str], code: int) -> None:
    with pytest.raises(TwilioRestException) as err:
        client_for(tw).calls.create(**fields)
    assert (err.value.status, err.value.code) == (400, code)
    assert tw.calls == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "+34600111222", "body": "no sender"}, 21603),
        ({"to": "+34600111222", "from_": SENDER, "body": ""}, 21602),
        ({"to": "+34600111222", "from_": SENDER, "body": "x" * 1601}, 21617),
    ],
)
def test_twilio_validation_errors(tw: FakeTwilio, fields: dict[str, str], code: int) -> None:
    with pytest.raises(TwilioRestException) as err:
        client_for(tw).messages.create(**fields)
    assert (err.value.status, err.value.code) == (400, code)
    assert tw.messages == []


def test_twilio_wrong_token_is_401(tw: FakeTwilio) -> None:
    with pytest.raises(TwilioRestException) as err:
        client_for(tw, token="0" * 32).messages.create(to="+34600111222", from_=SENDER, body="x")
    assert (err.value.status, err.value.code) == (401, 20003)
    assert err.value.msg.endswith(": Authenticate")
    assert tw.messages == []


def test_twilio_missing_auth_is_401(tw: FakeTwilio) -> None:
    url = f"{tw.url}/2010-04-01/Accounts/{tw.account_sid}/Messages.json"
    response = requests.post(url, data={"To": "+34600111222", "From": SENDER, "Body": "x"})
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


def test_twilio_other_account_in_path_is_404(tw: FakeTwilio) -> None:
    other = "AC" + "1" * 32
    with pytest.raises(TwilioRestException) as err:
        client_for(tw, account_sid=other).messages.create(to="+34600111222", from_=SENDER, body="x")
    assert (err.value.status, err.value.code) == (404, 20404)


def test_twilio_outage_answers_503_then_recovers(tw: FakeTwilio) -> None:
    tw.fail_next = 1
    client = client_for(tw)
    with pytest.raises(TwilioRestException) as err:
        client.messages.create(to="+34600111222", from_=SENDER, body="x")
    assert (err.value.status, err.value.code) == (503, 20503)
    assert tw.messages == []
    client.messages.create(to="+34600111222", from_=SENDER, body="x")
    assert len(tw.messages) == 1 and tw.requests == 2 and tw.fail_next == 0


# -- Web Push ---------------------------------------------------------------------------------


@pytest.fixture
def push() -> Iterator[FakePushService]:
    with FakePushService() as fake:
        yield fake


@pytest.fixture
def vapid_file(tmp_path: Path) -> tuple[str, str]:
    """(path of a PEM file with the private key, public key base64url), as deployed."""
    pem, public = vapid_keypair()
    path = tmp_path / "vapid_private.pem"
    path.write_text(pem, encoding="ascii")
    return str(path), public


def test_push_is_delivered_and_decrypts(push: FakePushService, vapid_file: tuple[str, str]) -> None:
    key_file, public = vapid_file
    browser = BrowserSubscription.create(push, "alice", application_server_key=public)
    payload = '{"title": "Invoice 42 is due", "url": "/pay/42"} ñ€😀'.encode()
    response = webpush(
        browser.info,
        data=payload,  # the library takes bytes as well as str
        vapid_private_key=key_file,
        vapid_claims={"sub": SUBJECT},
        ttl=3600,
        headers={"Urgency": "high", "Topic": "invoice-42"},
    )
    assert isinstance(response, requests.Response)
    assert response.status_code == 201
    location = response.headers["Location"]
    assert location.startswith("/message/")
    [received] = push.received
    assert isinstance(received, PushReceived)
    assert location == f"/message/{received.message_id}"
    assert received.path == "/push/alice" and browser.path == "/push/alice"
    assert received.ttl == 3600 and received.urgency == "high" and received.topic == "invoice-42"
    assert received.headers["content-encoding"] == "aes128gcm"
    assert received.headers["authorization"].startswith("vapid t=")
    assert browser.decrypt(received) == payload
    assert push.messages_for("alice") == [received]


def test_push_subscription_info_shape(push: FakePushService) -> None:
    browser = BrowserSubscription.create(push, "bob")
    assert browser.info["endpoint"] == push.endpoint("bob") == f"{push.url}/push/bob"
    keys = browser.info["keys"]
    assert len(keys["p256dh"]) == 87 and "=" not in keys["p256dh"]  # 65 bytes
    assert len(keys["auth"]) == 22 and "=" not in keys["auth"]  # 16 bytes


def test_push_with_a_vapid_instance(push: FakePushService) -> None:
    pem, _ = vapid_keypair()
    browser = BrowserSubscription.create(push, "carol")
    webpush(
        browser.info,
        data="hello",
        vapid_private_key=Vapid.from_pem(pem.encode()),
        vapid_claims={"sub": "https://cobro.example.com"},
        ttl=60,
    )
    assert browser.decrypt(push.received[0]) == b"hello"


def test_push_gone_subscription_is_410(push: FakePushService, vapid_file: tuple[str, str]) -> None:
    browser = BrowserSubscription.create(push, "dave")
    push.gone.add("/push/dave")
    with pytest.raises(WebPushException) as err:
        webpush(
            browser.info, data="x", vapid_private_key=vapid_file[0], vapid_claims={"sub": SUBJECT}
        )
    assert err.value.response is not None and err.value.response.status_code == 410
    assert err.value.status_code == 410
    assert push.received == []


def test_push_outage_is_503_with_retry_after(
    push: FakePushService, vapid_file: tuple[str, str]
) -> None:
    browser = BrowserSubscription.create(push, "erin")
    push.fail_next = 1
    with pytest.raises(WebPushException) as err:
        webpush(
            browser.info, data="x", vapid_private_key=vapid_file[0], vapid_claims={"sub": SUBJECT}
        )
    assert err.value.status_code == 503 and err.value.retry_after == "120"
    webpush(browser.info, data="x", vapid_private_key=vapid_file[0], vapid_claims={"sub": SUBJECT})
    assert len(push.received) == 1 and push.requests == 2


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": SUBJECT, "aud": "https://push.example.net"},  # another service's audience
        {"sub": SUBJECT, "exp": int(time.time()) + 2 * 86400},  # more than 24 hours ahead
    ],
)
def test_push_bad_vapid_claims_are_403(
    push: FakePushService, vapid_file: tuple[str, str], claims: dict[str, str | int]
) -> None:
    browser = BrowserSubscription.create(push, "frank")
    with pytest.raises(WebPushException) as err:
        webpush(browser.info, data="x", vapid_private_key=vapid_file[0], vapid_claims=claims)
    assert err.value.status_code == 403
    assert push.received == []


def test_push_other_application_server_key_is_403(
    push: FakePushService, vapid_file: tuple[str, str]
) -> None:
    _, other_public = vapid_keypair()
    browser = BrowserSubscription.create(push, "gina", application_server_key=other_public)
    with pytest.raises(WebPushException) as err:
        webpush(
            browser.info, data="x", vapid_private_key=vapid_file[0], vapid_claims={"sub": SUBJECT}
        )
    assert err.value.status_code == 403
    assert push.received == []


def test_push_without_vapid_is_401(push: FakePushService) -> None:
    browser = BrowserSubscription.create(push, "hank")
    with pytest.raises(WebPushException) as err:
        webpush(browser.info, data="x")
    assert err.value.status_code == 401
    assert push.received == []


def test_push_tampered_signature_is_403(push: FakePushService, vapid_file: tuple[str, str]) -> None:
    pem = Path(vapid_file[0]).read_text(encoding="ascii")
    headers = Vapid.from_pem(pem.encode()).sign({"sub": SUBJECT, "aud": push.url})
    _, other_public = vapid_keypair()
    token = headers["Authorization"].split("k=")[0]
    response = requests.post(
        push.endpoint("ivy"),
        headers={"TTL": "0", "Authorization": f"{token}k={other_public}"},
    )
    assert response.status_code == 403
    assert push.received == []


def raw_post(push: FakePushService, vapid_file: tuple[str, str], **headers: str) -> str:
    """POST with a valid VAPID header plus ``headers`` (``body=`` is the latin-1 body); return
    "<status> <reason>" so a refusal shows which check made it."""
    pem = Path(vapid_file[0]).read_text(encoding="ascii")
    auth = Vapid.from_pem(pem.encode()).sign({"sub": SUBJECT, "aud": push.url})
    body = headers.pop("body", "").encode("latin-1")
    sent = {"Authorization": auth["Authorization"], **headers}
    response = requests.post(push.endpoint("jo"), headers=sent, data=body)
    return f"{response.status_code} {response.json()['error'] if response.content else ''}".strip()


def test_push_protocol_checks(push: FakePushService, vapid_file: tuple[str, str]) -> None:
    # salt, rs=4096, idlen=65, keyid=an uncompressed point, one 17-octet record
    header = bytes(16) + (4096).to_bytes(4, "big") + bytes([65, 4]) + bytes(64)
    body = (header + bytes(17)).decode("latin-1")
    ece = {"Content-Encoding": "aes128gcm"}
    assert raw_post(push, vapid_file).startswith("400 a TTL header")
    assert raw_post(push, vapid_file, TTL="-1").startswith("400 a TTL header")
    assert raw_post(push, vapid_file, TTL="0") == "201"  # a push without payload
    assert raw_post(push, vapid_file, TTL="0", Urgency="urgent").startswith("400 Urgency")
    assert raw_post(push, vapid_file, TTL="0", Topic="not a topic!").startswith("400 Topic")
    no_encoding = raw_post(push, vapid_file, TTL="0", body=body)
    assert no_encoding.startswith("400 Content-Encoding must be aes128gcm")
    old_draft = raw_post(push, vapid_file, TTL="0", body=body, **{"Content-Encoding": "aesgcm"})
    assert old_draft.startswith("400 Content-Encoding must be aes128gcm")
    not_ece = raw_post(push, vapid_file, TTL="0", body="x" * 200, **ece)
    assert not_ece.startswith("400 the aes128gcm header")
    assert raw_post(push, vapid_file, TTL="0", body=body, **ece) == "201"
    big = body + "x" * (4097 - len(body))
    assert raw_post(push, vapid_file, TTL="0", body=big, **ece).startswith("413")
    assert [r.body for r in push.received] == [b"", body.encode("latin-1")]
    assert all(r.path == "/push/jo" and r.ttl == 0 for r in push.received)
