"""``/tasks``, on every database: staff tasks (here made by disputes taken by phone)
listed by status, due date and debtor and paged, one marked done once, roles,
Idempotency-Key, and one company never reaching another's tasks."""

from __future__ import annotations

from datetime import timedelta

from cobro.engine.tasks import assign_task
from cobro.engine.users import add_user
from cobro.store import tables as t

from .claimed import claimed, rows
from .conftest import NOW, Server


def two_tasks(server: Server) -> tuple[dict[str, object], dict[str, object]]:
    """Acme's disputes of F-2 (C1) now and of G-1 (C2) two days later: a task each, due a
    day after it was opened."""
    client = server.client("acme", "collector")
    first = client.post("/disputes", json={"customer": "C1", "item": "F-2", "reason": "Damaged"})
    server.clock.now = NOW + timedelta(days=2)
    second = client.post("/disputes", json={"customer": "C2", "item": "G-1", "reason": "Late"})
    assert first.status_code == second.status_code == 201
    tasks = client.get("/tasks").json()["data"]
    assert len(tasks) == 2
    return tasks[0], tasks[1]


def test_tasks_are_listed_by_status_due_date_and_debtor_and_paged(server: Server) -> None:
    claimed(server)
    first, second = two_tasks(server)
    client = server.client("acme", "collector")
    assert first["due_at"] == "2025-03-05T10:00:00Z" and first["customer"] == "C1"
    assert second["due_at"] == "2025-03-07T10:00:00Z" and second["customer"] == "C2"
    assert first["message"] == "Item F-2 disputed: Damaged"
    assert client.post(f"/tasks/{first['id']}/done").status_code == 200

    def found(**params: str) -> list[object]:
        response = client.get("/tasks", params=params)
        assert response.status_code == 200, response.text
        return [x["id"] for x in response.json()["data"]]

    assert found() == [first["id"], second["id"]]
    assert found(status="open") == [second["id"]]
    assert found(status="done") == [first["id"]]
    # Before the start of the day in Madrid: 2025-03-06 00:00 is 2025-03-05 23:00 UTC.
    assert found(due_before="2025-03-06") == [first["id"]]
    assert found(due_before="2025-03-05") == []
    assert found(due_before="2025-03-08", status="open") == [second["id"]]
    assert found(customer="C2") == [second["id"]]
    assert found(customer="NOPE") == []
    page = client.get("/tasks", params={"limit": 1}).json()
    rest = client.get("/tasks", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [x["id"] for x in page["data"] + rest["data"]] == [first["id"], second["id"]]
    assert rest["next_cursor"] is None
    bad = client.get("/tasks", params={"status": "closed", "due_before": "soon"})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"query.status", "query.due_before"}


def test_tasks_are_listed_by_the_staff_user_they_are_given_to(server: Server) -> None:
    claimed(server)
    first, second = two_tasks(server)
    acme = server.companies["acme"]
    with acme.engine.begin() as conn:
        add_user(conn, acme.company_id, "Ana@Acme.example", "collector", "long enough pw 1", NOW)
        assign_task(conn, acme.company_id, int(str(first["id"])), "ana@acme.example")
    client = server.client("acme", "read-only")

    def found(**params: str) -> list[object]:
        return [x["id"] for x in client.get("/tasks", params=params).json()["data"]]

    assert client.get(f"/tasks/{first['id']}").json()["assignee"] == "ana@acme.example"
    assert client.get(f"/tasks/{second['id']}").json()["assignee"] is None
    assert found(assignee="ana@acme.example") == [first["id"]]
    assert found(assignee="ANA@acme.example") == [first["id"]]
    assert found(assignee="") == [second["id"]]
    assert found(assignee="bob@acme.example") == []
    assert (
        server.client("beta", "read-only")
        .get("/tasks", params={"assignee": "ana@acme.example"})
        .json()["data"]
        == []
    )


def test_a_task_is_marked_done_once(server: Server) -> None:
    claimed(server)
    first, _ = two_tasks(server)
    client = server.client("acme", "collector")
    server.clock.now = NOW + timedelta(days=3)

    done = client.post(f"/tasks/{first['id']}/done")
    again = client.post(f"/tasks/{first['id']}/done")
    unknown = client.post("/tasks/999999/done")

    assert done.status_code == 200
    assert done.json() == {**first, "status": "done", "done_at": "2025-03-07T10:00:00Z"}
    assert client.get(f"/tasks/{first['id']}").json() == done.json()
    assert again.status_code == 409 and "already done" in again.json()["detail"]
    assert unknown.status_code == 404
    assert client.get("/tasks/999999").status_code == 404


def test_a_read_only_key_cannot_mark_a_task_done(server: Server) -> None:
    claimed(server)
    first, _ = two_tasks(server)

    refused = server.client("acme", "read-only").post(f"/tasks/{first['id']}/done")

    assert refused.status_code == 403
    assert {x.status for x in rows(server.companies["acme"], t.tasks)} == {"open"}


def test_done_repeated_with_its_idempotency_key_answers_the_same(server: Server) -> None:
    claimed(server)
    first, _ = two_tasks(server)
    client = server.client("acme", "collector", headers={"idempotency-key": "done-1"})

    once = client.post(f"/tasks/{first['id']}/done")
    again = client.post(f"/tasks/{first['id']}/done")  # without the key: 409, already done

    assert once.status_code == again.status_code == 200
    assert again.json() == once.json()
    assert again.headers["idempotent-replayed"] == "true"


def test_another_companys_tasks_are_never_found_listed_or_done(server: Server) -> None:
    claimed(server)
    first, second = two_tasks(server)
    beta = server.client("beta", "admin")

    for task in (first, second):
        assert beta.get(f"/tasks/{task['id']}").status_code == 404
        assert beta.post(f"/tasks/{task['id']}/done").status_code == 404
    assert beta.get("/tasks").json()["data"] == []
    assert beta.get("/tasks", params={"customer": "C1", "status": "open"}).json()["data"] == []
    assert {x.status for x in rows(server.companies["acme"], t.tasks)} == {"open"}
