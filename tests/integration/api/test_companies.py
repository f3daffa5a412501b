"""One server, two companies: each link opens its own company's page, a link naming the
other company (or signed with its secret) opens nothing, and each company's look is its
own."""

from __future__ import annotations

from cobro.engine.links import make_token, token_company

from ..portal.helpers import OPENED_AT, Browser, two_debtors_claimed
from .conftest import Server


def test_each_companys_link_opens_its_own_page_on_one_server(server: Server) -> None:
    acme, beta = server.companies["acme"], server.companies["beta"]
    tokens = two_debtors_claimed(acme)
    server.clock.now = OPENED_AT
    browser = Browser(server.app)
    # A token for beta's claim signed with acme's secret, and acme's claim named as beta's.
    forged = [
        make_token(acme.secret, "beta", "C1", 1, OPENED_AT),
        make_token(beta.secret, "acme", "C1", 1, OPENED_AT),
    ]

    page = browser.get(f"/portal/{tokens['C1']}")

    assert token_company(tokens["C1"]) == "acme"
    assert page.status_code == 200 and "Acme Industrial" in page.text
    assert 'href="/brand/acme/style.css"' in page.text
    for token in forged:
        refused = browser.get(f"/portal/{token}")
        assert refused.status_code == 404
        assert "Acme Industrial" not in refused.text


def test_brand_files_are_served_per_company_and_not_for_an_unknown_one(
    server: Server,
) -> None:
    browser = Browser(server.app)

    acme = browser.get("/brand/acme/style.css")
    beta = browser.get("/brand/beta/style.css")
    unknown = browser.get("/brand/nobody/style.css")

    assert acme.status_code == beta.status_code == 200 and "--brand" in acme.text
    assert unknown.status_code == 404
