"""Links that cannot be honoured: a plain page with no data, a 4xx status, nothing recorded."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from cobro.engine.links import make_token
from cobro.store import tables as t

from .conftest import MakePortal, Portal
from .helpers import evidence_kinds, outbox_id, rows

ISSUED = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)  # the run's send time: 09:00 in Madrid
DEBTOR_DATA = ("Acme", "C1", "F-1", "Other Co", "G-1", "Traceback")


def assert_refused(
    portal: Portal, url: str, status: int, words: str, *, company_named: bool = False
) -> None:
    """``url`` answers ``status`` with a page that says ``words`` and shows no debtor's data
    (nor the company's name, unless ``company_named``: an expired link was genuinely
    ours), and nothing is recorded (a GET and each of the forms)."""
    hidden = DEBTOR_DATA if company_named else (*DEBTOR_DATA, "Distribuciones")
    before = evidence_kinds(portal.ws)
    browser = portal.browser()
    pages = (("GET", url), ("GET", f"{url}/statement.pdf"))
    for method, path in (*pages, *(("POST", f"{url}/{f}") for f in FORMS)):
        response = browser.request(method, path, data={"csrf": "x", "reason": "r"})
        assert response.status_code == status, (method, path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert words in response.text
        for data in hidden:
            assert data not in response.text, data
        assert response.headers["cache-control"] == "no-store"
        assert "cobro_browser" not in response.headers.get("set-cookie", "")
    assert rows(portal.ws, t.claim_views) == []
    assert rows(portal.ws, t.disputes) == [] and rows(portal.ws, t.promises) == []
    assert evidence_kinds(portal.ws) == before


FORMS = ("read", "disputes", "promises")
INVALID = "Este enlace no es válido"


def test_a_tampered_signature_is_refused(portal: Portal) -> None:
    payload, stamp, signature = portal.token.split(".")
    # The first character of the signature: every one of its bits counts (the last
    # character of unpadded base64 carries bits that decoding ignores).
    changed = ("A" if signature[0] != "A" else "B") + signature[1:]
    tampered = f"{payload}.{stamp}.{changed}"
    assert_refused(portal, f"/portal/{tampered}", 404, INVALID)


def test_a_payload_changed_to_another_debtor_is_refused(portal: Portal) -> None:
    _, stamp, signature = portal.token.split(".")
    other = base64.urlsafe_b64encode(
        json.dumps({"co": "demo", "cu": "C2", "ob": outbox_id(portal.ws, "C2")}).encode()
    )
    forged = f"{other.decode().rstrip('=')}.{stamp}.{signature}"
    assert_refused(portal, f"/portal/{forged}", 404, INVALID)


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c", "x" * 700, "%00", "...."])
def test_a_malformed_token_is_refused(portal: Portal, token: str) -> None:
    assert_refused(portal, f"/portal/{token}", 404, INVALID)


def test_a_token_signed_with_another_secret_is_refused(portal: Portal) -> None:
    forged = make_token("another secret", "demo", "C1", outbox_id(portal.ws, "C1"), ISSUED)
    assert_refused(portal, f"/portal/{forged}", 404, INVALID)


def test_a_link_of_another_company_signed_with_the_same_secret_is_refused(
    portal: Portal,
) -> None:
    foreign = make_token(portal.ws.secret, "other", "C1", outbox_id(portal.ws, "C1"), ISSUED)
    assert_refused(portal, f"/portal/{foreign}", 404, INVALID)


def test_a_link_to_an_unknown_claim_is_refused(portal: Portal) -> None:
    unknown = make_token(portal.ws.secret, "demo", "C1", 999_999, ISSUED)
    assert_refused(portal, f"/portal/{unknown}", 404, INVALID)


def test_a_link_naming_one_debtor_and_another_debtors_claim_is_refused(portal: Portal) -> None:
    mixed = make_token(portal.ws.secret, "demo", "C1", outbox_id(portal.ws, "C2"), ISSUED)
    assert_refused(portal, f"/portal/{mixed}", 404, INVALID)


def test_a_link_expires_after_link_max_age_days_and_asks_for_a_new_one(portal: Portal) -> None:
    portal.clock.now = ISSUED + timedelta(days=30) - timedelta(seconds=1)
    assert portal.browser().get(f"/portal/{portal.token}").status_code == 200
    with portal.ws.engine.begin() as conn:
        conn.execute(t.evidence.delete().where(t.evidence.c.kind == "claim.opened"))
        conn.execute(t.claim_views.delete())

    portal.clock.now = ISSUED + timedelta(days=30)

    assert_refused(
        portal, f"/portal/{portal.token}", 410, "Este enlace ha caducado", company_named=True
    )
    page = portal.browser().get(f"/portal/{portal.token}?lang=en").text
    assert "This link has expired. Please ask for a new link" in page
    assert "administracion@demo.example" in page  # whom to ask (company.reply_to)


def test_a_link_used_before_it_expired_is_refused_when_replayed_after(portal: Portal) -> None:
    browser = portal.browser()
    csrf = browser.csrf(portal.token)  # opened while valid: one "opened" view
    portal.clock.now = ISSUED + timedelta(days=31)

    again = browser.get(f"/portal/{portal.token}")
    read = browser.post(f"/portal/{portal.token}/read", data={"csrf": csrf})

    assert again.status_code == read.status_code == 410
    assert [v.kind for v in rows(portal.ws, t.claim_views)] == ["opened"]
    assert "claim.read" not in evidence_kinds(portal.ws)


def test_link_max_age_days_sets_how_long_a_link_lasts(make_portal: MakePortal) -> None:
    portal = make_portal(
        replace={"  max_catch_up_days: 30": "  max_catch_up_days: 30\n  link_max_age_days: 2"}
    )
    portal.clock.now = ISSUED + timedelta(days=2, seconds=-1)
    assert portal.browser().get(f"/portal/{portal.token}").status_code == 200
    portal.clock.now = ISSUED + timedelta(days=2)
    assert portal.browser().get(f"/portal/{portal.token}").status_code == 410


def test_an_unknown_path_is_a_plain_404(portal: Portal) -> None:
    for url in ("/nothing", f"/portal/{portal.token}/nothing", "/portal/"):
        response = portal.browser().get(url)
        assert response.status_code == 404
        assert "Traceback" not in response.text and "Acme" not in response.text
