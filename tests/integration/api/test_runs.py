"""``/runs``, on every database: a run started for a date is answered 202 and done after
the answer, then reports; today's run acts as of now; a later day refused; one run at a
time per company; a run that stops says why; lists; collector keys; Idempotency-Key;
one company never reaching another's runs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import event

from cobro.store import tables as t

from ..support import business, d, invoice, load
from .claimed import claims_of, rows
from .conftest import MakeServer, Server

SENDER = (
    "  sender:                        # nothing is sent until this is a valid address\n"
    "    email: cobros@demo.example\n"
    "    name: Cobros Distribuciones Demo\n"
)


def debtors(server: Server) -> None:
    """Acme: C1 and C2, each with an item reaching b2b phase 00 on 2025-03-03; beta: B1,
    with one reaching it that day too."""
    acme, beta = server.companies["acme"], server.companies["beta"]
    business(acme, "C1", "ap@acme.example", "Acme Industrial")
    business(acme, "C2", "ap@other.example", "Other Co")
    invoice(acme, "F-1", "C1", d("2025-03-10"), "250.50")
    invoice(acme, "G-1", "C2", d("2025-03-10"), "999.00")
    business(beta, "B1", "ap@beta-debtor.example", "Beta Debtor")
    invoice(beta, "H-1", "B1", d("2025-03-10"), "75.00")


def test_a_run_is_answered_202_at_once_then_done_and_reported(server: Server) -> None:
    debtors(server)
    client = server.client("acme", "admin")

    started = client.post("/runs", json={"date": "2025-03-03"})

    assert started.status_code == 202, started.text
    run = started.json()
    assert started.headers["location"] == f"/api/v1/runs/{run['id']}"
    # The answer is given before the run: nothing planned yet.
    assert (run["status"], run["date"], run["report"]) == ("running", "2025-03-03", None)
    assert run["as_of"] == "2025-03-03T08:00:00Z"  # that day's send time, as `cobro run --date`
    assert run["claims"] == {"planned": 0, "sending": 0, "sent": 0, "failed": 0, "cancelled": 0}
    assert run["started_at"] == "2025-03-04T10:00:00Z" and run["finished_at"] is None
    done = client.request("GET", started.headers["location"]).json()
    assert done["status"] == "finished" and done["error"] is None
    assert done["finished_at"] == "2025-03-04T10:00:00Z"
    assert done["claims"] == {"planned": 0, "sending": 0, "sent": 2, "failed": 0, "cancelled": 0}
    report = done["report"]
    assert {
        k: report[k] for k in ("planned", "items", "sent", "failed", "skipped", "retrying")
    } == {
        "planned": 2,
        "items": 2,
        "sent": 2,
        "failed": 0,
        "skipped": 0,
        "retrying": 0,
    }
    assert report["by_channel"] == {"email": 2}
    assert report["cost"] == {"amount": "0.0010", "currency": "EUR"}
    assert report["errors"] == [] and report["failures"] == []
    assert set(claims_of(server.companies["acme"])) == {"C1", "C2"}
    assert len(list(server.companies["acme"].mail_dir.rglob("*.eml"))) == 2


def test_a_claim_that_cannot_be_delivered_is_named_in_the_report(server: Server) -> None:
    debtors(server)
    acme = server.companies["acme"]
    load(acme, "customers", {"external_id": "C3", "name": "No Address", "kind": "business"})
    invoice(acme, "K-1", "C3", d("2025-03-10"), "40.00")
    client = server.client("acme", "admin")

    started = client.post("/runs", json={"date": "2025-03-03"})

    report = client.request("GET", started.headers["location"]).json()["report"]
    assert (report["planned"], report["sent"], report["failed"]) == (3, 2, 1)
    (failure,) = report["failures"]
    assert failure["claim"] == claims_of(acme)["C3"]
    assert (failure["customer"], failure["customer_name"]) == ("C3", "No Address")
    assert failure["reason"]
    assert any("C3" in line for line in report["errors"])


def test_todays_run_acts_as_of_now_and_leaves_what_is_not_due_yet(server: Server) -> None:
    debtors(server)
    acme = server.companies["acme"]
    invoice(acme, "F-2", "C1", d("2025-03-11"), "10.00")  # phase 00 on 2025-03-04
    server.clock.now = datetime(2025, 3, 4, 6, 30, tzinfo=UTC)  # 07:30 in Madrid
    client = server.client("acme", "admin")

    started = client.post("/runs")

    run = client.request("GET", started.headers["location"]).json()
    assert (run["date"], run["as_of"]) == ("2025-03-04", "2025-03-04T06:30:00Z")
    assert run["status"] == "finished"
    assert run["claims"]["planned"] == 1 and run["claims"]["sent"] == 0
    assert run["report"]["planned"] == 1 and run["report"]["sent"] == 0
    assert list(acme.mail_dir.rglob("*.eml")) == []


def test_a_day_to_come_or_a_bad_body_is_refused_and_nothing_runs(server: Server) -> None:
    debtors(server)
    client = server.client("acme", "admin")

    later = client.post("/runs", json={"date": "2025-03-05"})
    typo = client.post("/runs", json={"day": "2025-03-03"})
    not_a_date = client.post("/runs", json={"date": "03/03/2025"})

    assert later.status_code == 422
    assert [e["field"] for e in later.json()["errors"]] == ["body.date"]
    assert "has not come yet" in later.json()["detail"]
    assert typo.status_code == not_a_date.status_code == 422
    assert rows(server.companies["acme"], t.runs) == []


def test_a_second_run_while_one_is_in_progress_is_refused_409(server: Server) -> None:
    debtors(server)
    ws = server.companies["acme"]
    client = server.client("acme", "admin")
    planning = threading.Event()
    release = threading.Event()
    held: list[int] = []

    def hold(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        """The run stops at its first outbox insert until the test lets it go on."""
        if "INSERT INTO outbox" in statement and not held:
            held.append(threading.get_ident())
            planning.set()
            release.wait(30)

    answers: list[httpx.Response] = []
    event.listen(ws.engine, "before_cursor_execute", hold)
    try:
        first = threading.Thread(
            target=lambda: answers.append(client.post("/runs", json={"date": "2025-03-03"}))
        )
        first.start()
        assert planning.wait(30), "the run never started planning"
        busy = client.post("/runs", json={"date": "2025-03-03"})
        running = client.get("/runs").json()["data"]
        release.set()
        first.join(60)
    finally:
        release.set()
        event.remove(ws.engine, "before_cursor_execute", hold)

    (run,) = running
    assert run["status"] == "running"
    assert busy.status_code == 409
    assert busy.json()["type"] == "/api/v1/problems/run-in-progress"
    assert busy.headers["location"] == f"/api/v1/runs/{run['id']}"
    assert answers[0].status_code == 202
    assert client.get(f"/runs/{run['id']}").json()["status"] == "finished"
    after = client.post("/runs", json={"date": "2025-03-03"})  # the first one has ended
    assert after.status_code == 202
    assert client.request("GET", after.headers["location"]).json()["report"]["planned"] == 0


def test_a_run_that_stops_is_reported_failed_with_why(make_server: MakeServer) -> None:
    server = make_server({SENDER: ""})
    debtors(server)
    client = server.client("acme", "admin")

    started = client.post("/runs", json={"date": "2025-03-03"})

    run = client.request("GET", started.headers["location"]).json()
    assert started.status_code == 202
    assert run["status"] == "failed" and run["report"] is None
    assert run["error"].startswith("configuration error: ")
    assert "company.sender.email" in run["error"]
    assert run["claims"]["planned"] == 2  # planned, waiting for a sender address
    again = client.post("/runs", json={"date": "2025-03-03"})
    assert again.status_code == 202  # the failed run no longer holds the company


def test_runs_are_listed_by_date_and_paged(server: Server) -> None:
    debtors(server)
    client = server.client("acme", "admin")
    ids = [
        client.post("/runs", json={"date": day}).json()["id"]
        for day in ("2025-03-02", "2025-03-03", "2025-03-04")
    ]

    def found(**params: str) -> list[int]:
        response = client.get("/runs", params=params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["data"]]

    assert found() == ids
    assert found(**{"from": "2025-03-03"}) == ids[1:]
    assert found(**{"to": "2025-03-03"}) == ids[:2]
    first = client.get("/runs", params={"limit": 2}).json()
    rest = client.get("/runs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in first["data"] + rest["data"]] == ids
    assert [r["report"]["sent"] for r in first["data"] + rest["data"]] == [0, 2, 0]
    assert client.get("/runs/999999").status_code == 404


def test_a_read_only_key_cannot_start_a_run_and_a_collector_key_can(server: Server) -> None:
    debtors(server)

    refused = server.client("acme", "read-only").post("/runs", json={"date": "2025-03-03"})

    assert refused.status_code == 403
    assert rows(server.companies["acme"], t.runs) == []
    assert server.client("acme", "read-only").get("/runs").json()["data"] == []
    started = server.client("acme", "collector").post("/runs", json={"date": "2025-03-03"})
    assert started.status_code == 202
    assert len(rows(server.companies["acme"], t.runs)) == 1


def test_a_run_repeated_with_its_idempotency_key_runs_once(server: Server) -> None:
    debtors(server)
    client = server.client("acme", "admin", headers={"idempotency-key": "run-2025-03-03"})

    first = client.post("/runs", json={"date": "2025-03-03"})
    again = client.post("/runs", json={"date": "2025-03-03"})

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(rows(server.companies["acme"], t.runs)) == 1


def test_one_companys_run_never_touches_or_shows_anothers(server: Server) -> None:
    debtors(server)
    acme_run = server.client("acme", "admin").post("/runs", json={"date": "2025-03-03"}).json()
    beta = server.client("beta", "admin")

    assert beta.get(f"/runs/{acme_run['id']}").status_code == 404
    assert beta.get("/runs").json()["data"] == []
    beta_run = beta.post("/runs", json={"date": "2025-03-03"})
    shown = beta.request("GET", beta_run.headers["location"]).json()

    assert shown["report"]["planned"] == 1 and shown["claims"]["sent"] == 1
    assert [r["id"] for r in beta.get("/runs").json()["data"]] == [shown["id"]]
    assert set(claims_of(server.companies["beta"])) == {"B1"}
    acme_claims = server.client("acme", "admin").get(f"/runs/{acme_run['id']}").json()["claims"]
    assert acme_claims["sent"] == 2
