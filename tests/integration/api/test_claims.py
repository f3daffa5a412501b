"""``/claims`` and ``/customers/{id}/claims``, on every database: claims sent by real runs,
their items, deliveries, opens and reads (apart), the message as sent, filters and
pages, resending (roles, refusals, Idempotency-Key), and one company never reaching
another's claims."""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any

from sqlalchemy import event, func, select, update

from cobro.engine.runs import run_day
from cobro.store import tables as t

from ..portal.helpers import Browser
from ..support import local, parse
from .claimed import LATER, RUN_DAY, claimed, claims_of, rows, token_of
from .conftest import Server


def resends(server: Server, company: str = "acme") -> int:
    ws = server.companies[company]
    o = t.outbox.c
    with ws.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    o.company_id == ws.company_id, o.step.startswith("resend/")
                )
            ).scalar_one()
        )


def planned_later(server: Server) -> None:
    """Acme's run of LATER at 07:00, before the send time: phase 01 planned, not sent."""
    acme = server.companies["acme"]
    run_day(acme, LATER, as_of=local(acme, LATER, "07:00"))


def test_a_debtors_claims_are_listed_with_what_was_sent(server: Server) -> None:
    claimed(server)
    acme = server.client("acme", "read-only")

    page = acme.get("/customers/C1/claims")

    assert page.status_code == 200
    (claim,) = page.json()["data"]
    assert claim == {
        "id": claims_of(server.companies["acme"])["C1"],
        "customer": "C1",
        "date": RUN_DAY.isoformat(),
        "step": "b2b/00",
        "name": "Debt due in the next 7 days",
        "kind": "phase",
        "status": "sent",
        "reason": None,
        "attempts": 1,
        "sent_at": "2025-03-03T08:00:00Z",  # 09:00 in Madrid
        "next_attempt_at": None,
        "finished_at": "2025-03-03T08:00:00Z",
        "resend_of": None,
    }
    assert page.json()["next_cursor"] is None
    unknown = acme.get("/customers/NOPE/claims")
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "/api/v1/problems/not-found"


def test_a_debtors_claims_are_two_indexed_queries(server: Server) -> None:
    """The debtor, then its claims by the outbox key (company, debtor, ...): never a walk
    of all the company's claims (SQLite keeps no statistics to tell it which is cheaper)."""
    claimed(server)
    planned_later(server)
    ws = server.companies["acme"]
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "api_keys" not in statement:
            seen.append((statement, params))

    engine = server.app.state.cobro.companies["acme"].reader
    event.listen(engine, "before_cursor_execute", record)
    try:
        page = server.client("acme", "read-only").get("/customers/C1/claims")
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert [c["step"] for c in page.json()["data"]] == ["b2b/00", "b2b/01"]
    assert len(seen) == 2
    assert "FROM customers" in seen[0][0] and "FROM outbox" in seen[1][0]
    if ws.engine.dialect.name == "sqlite":
        with ws.engine.connect() as conn:
            plan = " | ".join(
                str(row[-1])
                for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + seen[1][0], seen[1][1])
            )
        assert "outbox USING INDEX" in plan and "(company_id=? AND customer_id=?)" in plan, plan


def test_a_debtors_claims_are_read_while_a_writer_holds_the_database(server: Server) -> None:
    """A read answered without a worker thread never waits for a writer (on SQLite the
    readers read beside the write lock)."""
    claimed(server)
    ws = server.companies["acme"]
    acme = server.client("acme", "read-only")
    assert acme.get("/customers").status_code == 200  # the key found, before the lock

    with ws.engine.connect() as conn:
        conn.execute(update(t.customers).values(name="Renamed, never committed"))
        page = acme.get("/customers/C1/claims")
        debtor = acme.get("/customers/C1")
        conn.rollback()

    assert page.status_code == 200 and len(page.json()["data"]) == 1
    assert debtor.json()["name"] == "Acme Industrial"


def test_a_claim_shows_its_items_deliveries_and_opens_apart_from_reads(server: Server) -> None:
    claimed(server)
    ws = server.companies["acme"]
    token = token_of(ws, "ap@acme.example")
    scanner = Browser(server.app, ip="198.51.100.9", user_agent="MailScanner/2.0")
    assert scanner.get(f"/portal/{token}").status_code == 200
    debtor = Browser(server.app, ip="203.0.113.7", user_agent="Phone/1.0")
    csrf = debtor.csrf(token)  # opens the page too
    assert debtor.post(f"/portal/{token}/read", data={"csrf": csrf}).status_code == 303
    claim_id = claims_of(ws)["C1"]

    claim = server.client("acme", "read-only").get(f"/claims/{claim_id}").json()

    assert claim["customer_name"] == "Acme Industrial" and claim["status"] == "sent"
    assert [
        (i["number"], i["external_id"], i["amount"], i["balance_now"]) for i in claim["items"]
    ] == [
        (
            "F-1",
            "F-1",
            {"amount": "100.00", "currency": "EUR"},
            {"amount": "100.00", "currency": "EUR"},
        ),
        (
            "F-2",
            "F-2",
            {"amount": "250.50", "currency": "EUR"},
            {"amount": "250.50", "currency": "EUR"},
        ),
    ]
    (delivery,) = claim["deliveries"]
    (kept,) = [x for x in rows(ws, t.deliveries) if x.outbox_id == claim_id]
    assert delivery == {
        "id": kept.id,
        "attempt": 1,
        "at": "2025-03-03T08:00:00Z",
        "channel": "email",
        "recipient": "ap@acme.example",
        "role": "debtor",
        "status": "sent",
        "state": "sent",
        "state_at": "2025-03-03T08:00:00Z",
        "message_id": kept.message_id,
        "error": None,
        "cost": {"amount": "0.000500", "currency": "EUR"},
        "resend_of": None,
        "message_sha256": kept.message_sha256,
        "message_url": f"/api/v1/claims/{claim_id}/deliveries/{kept.id}/message",
    }
    assert [(v["ip"], v["user_agent"]) for v in claim["opens"]] == [
        ("198.51.100.9", "MailScanner/2.0"),
        ("203.0.113.7", "Phone/1.0"),
    ]
    assert [(v["ip"], v["user_agent"]) for v in claim["reads"]] == [("203.0.113.7", "Phone/1.0")]
    assert [e["kind"] for e in claim["events"]] == ["delivery", "opened", "opened", "read"]


def test_a_deliverys_message_is_served_exactly_as_it_was_sent(server: Server) -> None:
    claimed(server)
    ws = server.companies["acme"]
    claims = claims_of(ws)
    client = server.client("acme", "read-only")
    url = client.get(f"/claims/{claims['C1']}").json()["deliveries"][0]["message_url"]
    (caught,) = [
        p.read_bytes() for p in ws.mail_dir.rglob("*.eml") if b"ap@acme.example" in p.read_bytes()
    ]

    response = client.request("GET", url)

    assert response.status_code == 200
    assert response.headers["content-type"] == "message/rfc822"
    assert response.content == caught
    digest = base64.b64encode(hashlib.sha256(caught).digest()).decode()
    assert response.headers["repr-digest"] == f"sha-256=:{digest}:"
    assert parse(response.content)["To"] == "Acme Industrial <ap@acme.example>"
    # The delivery asked for under another claim: not found.
    other = url.replace(f"/claims/{claims['C1']}/", f"/claims/{claims['C2']}/")
    assert client.request("GET", other).status_code == 404


def test_claims_are_filtered_by_debtor_date_step_channel_and_status(server: Server) -> None:
    claimed(server)
    planned_later(server)
    ids = {(r.customer, r.step): r.id for r in claim_rows(server)}
    client = server.client("acme", "read-only")

    def found(**params: str) -> list[int]:
        response = client.get("/claims", params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["data"]]

    sent = [ids[("C1", "b2b/00")], ids[("C2", "b2b/00")]]
    later = [ids[("C1", "b2b/01")], ids[("C2", "b2b/01")]]
    assert found() == sent + later
    assert found(customer="C1") == [ids[("C1", "b2b/00")], ids[("C1", "b2b/01")]]
    assert found(status="planned") == later
    assert found(status="sent", customer="C2") == [ids[("C2", "b2b/00")]]
    assert found(step="b2b/01") == later
    assert found(channel="email") == sent  # the planned ones have no delivery yet
    assert found(channel="sms") == []
    assert found(**{"from": "2025-03-04"}) == later
    assert found(**{"to": "2025-03-16"}) == sent
    assert found(**{"from": "2025-03-03", "to": "2025-03-03"}) == sent
    assert found(customer="NOPE") == []
    bad = client.get("/claims", params={"status": "lost", "from": "yesterday"})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"query.status", "query.from"}


def claim_rows(server: Server) -> list[Any]:
    ws = server.companies["acme"]
    o, c = t.outbox.c, t.customers.c
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(o.id, o.step, c.external_id.label("customer"))
                .join(t.customers, c.id == o.customer_id)
                .where(o.company_id == ws.company_id)
                .order_by(o.id)
            )
        )


def test_claims_are_paged_by_cursor_without_gaps_or_repeats(server: Server) -> None:
    claimed(server)
    planned_later(server)
    client = server.client("acme", "read-only")
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/claims", params=params).json()
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [r.id for r in claim_rows(server)]
    assert len(seen) == 4
    debtor = client.get("/customers/C1/claims", params={"limit": 1}).json()
    rest = client.get(
        "/customers/C1/claims", params={"limit": 1, "cursor": debtor["next_cursor"]}
    ).json()
    assert [c["step"] for c in debtor["data"] + rest["data"]] == ["b2b/00", "b2b/01"]
    assert rest["next_cursor"] is None


def test_a_resend_sends_the_kept_message_again_as_a_claim_of_its_own(server: Server) -> None:
    claimed(server)
    ws = server.companies["acme"]
    claim_id = claims_of(ws)["C1"]
    (original,) = [x for x in rows(ws, t.deliveries) if x.outbox_id == claim_id]
    before = len(list(ws.mail_dir.rglob("*.eml")))

    response = server.client("acme", "collector").post(f"/claims/{claim_id}/resend")

    assert response.status_code == 201, response.text
    body = response.json()
    resend = body["resend"]
    assert response.headers["location"] == f"/api/v1/claims/{resend}"
    assert body["claim"] == claim_id and body["status"] == "sent"
    assert [
        (d["channel"], d["recipient"], d["status"], d["resend_of"]) for d in body["deliveries"]
    ] == [("email", "ap@acme.example", "sent", original.id)]
    assert body["link_expired_at"] is None
    mails = sorted(ws.mail_dir.rglob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    assert len(mails) == before + 1
    again = parse(mails[-1].read_bytes())
    assert again["X-Cobro-Resend-Of"] == original.message_id
    shown = server.client("acme", "read-only").get(f"/claims/{resend}").json()
    assert (shown["kind"], shown["resend_of"], shown["step"]) == (
        "resend",
        claim_id,
        f"resend/{claim_id}/1",
    )
    assert shown["deliveries"][0]["resend_of"] == original.id


def test_a_resend_to_one_address_goes_there_only_and_a_bad_address_is_refused(
    server: Server,
) -> None:
    claimed(server)
    claim_id = claims_of(server.companies["acme"])["C1"]
    client = server.client("acme", "collector")

    moved = client.post(f"/claims/{claim_id}/resend", json={"to": "boss@acme.example"})
    bad = client.post(f"/claims/{claim_id}/resend", json={"to": "not an address"})
    unknown_field = client.post(f"/claims/{claim_id}/resend", json={"address": "x@y.example"})

    assert moved.status_code == 201
    assert [d["recipient"] for d in moved.json()["deliveries"]] == ["boss@acme.example"]
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["body.to"]
    assert unknown_field.status_code == 422
    assert resends(server) == 1


def test_a_claim_never_sent_cannot_be_resent_and_an_unknown_one_is_not_found(
    server: Server,
) -> None:
    claimed(server)
    planned_later(server)
    planned = next(r.id for r in claim_rows(server) if r.step == "b2b/01")
    client = server.client("acme", "collector")

    never = client.post(f"/claims/{planned}/resend")
    unknown = client.post("/claims/999999/resend")

    assert never.status_code == 409
    assert never.json()["type"] == "/api/v1/problems/conflict"
    assert "never sent" in never.json()["detail"]
    assert unknown.status_code == 404
    assert client.get("/claims/999999").status_code == 404
    assert resends(server) == 0


def test_a_read_only_key_cannot_resend(server: Server) -> None:
    claimed(server)
    claim_id = claims_of(server.companies["acme"])["C1"]

    refused = server.client("acme", "read-only").post(f"/claims/{claim_id}/resend")

    assert refused.status_code == 403
    assert refused.json()["type"] == "/api/v1/problems/forbidden"
    assert resends(server) == 0


def test_a_resend_repeated_with_its_idempotency_key_is_sent_once(server: Server) -> None:
    claimed(server)
    claim_id = claims_of(server.companies["acme"])["C1"]
    client = server.client("acme", "collector", headers={"idempotency-key": "resend-C1"})

    first = client.post(f"/claims/{claim_id}/resend")
    again = client.post(f"/claims/{claim_id}/resend")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert resends(server) == 1


def test_concurrent_resends_with_one_idempotency_key_send_once(server: Server) -> None:
    """Six identical resends with one key at once (each makes a new claim without the
    key): one is sent, the others are told it is in progress or get its answer again."""
    claimed(server)
    claim_id = claims_of(server.companies["acme"])["C1"]
    start = threading.Barrier(6)
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def send() -> None:
        client = server.client("acme", "collector", headers={"idempotency-key": "race-C1"})
        start.wait()
        response = client.post(f"/claims/{claim_id}/resend")
        with lock:
            answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    assert {status for status, _ in answers} <= {201, 409}
    made = [body for status, body in answers if status == 201]
    assert made and all(body == made[0] for body in made)
    refused = [body["type"] for status, body in answers if status == 409]
    assert set(refused) <= {"/api/v1/problems/request-in-progress"}
    assert resends(server) == 1


def test_another_companys_claims_are_never_found_listed_or_resent(server: Server) -> None:
    claimed(server)
    acme_ws, beta_ws = server.companies["acme"], server.companies["beta"]
    acme_claims = claims_of(acme_ws)
    beta_claim = claims_of(beta_ws)["C1"]
    (delivery,) = [x for x in rows(acme_ws, t.deliveries) if x.outbox_id == acme_claims["C1"]]
    beta = server.client("beta", "admin")

    for claim_id in acme_claims.values():
        assert beta.get(f"/claims/{claim_id}").status_code == 404
        assert beta.post(f"/claims/{claim_id}/resend").status_code == 404
        assert (
            beta.post(f"/claims/{claim_id}/resend", json={"to": "x@beta.example"}).status_code
            == 404
        )
    message = f"/claims/{acme_claims['C1']}/deliveries/{delivery.id}/message"
    assert beta.get(message).status_code == 404
    assert beta.get(f"/claims/{beta_claim}/deliveries/{delivery.id}/message").status_code == 404
    assert [c["id"] for c in beta.get("/claims").json()["data"]] == [beta_claim]
    assert [c["id"] for c in beta.get("/claims", params={"status": "sent"}).json()["data"]] == [
        beta_claim
    ]
    # Beta's own C1 is not acme's C1; acme's C2 does not exist for beta.
    assert [c["id"] for c in beta.get("/customers/C1/claims").json()["data"]] == [beta_claim]
    assert beta.get("/customers/C2/claims").status_code == 404
    assert beta.get("/claims", params={"customer": "C2"}).json()["data"] == []
    assert resends(server, "acme") == 0
