"""The task board: open tasks, due today, overdue, done, of everyone or of one assignee, and
how many each has; a collector marks a task done and gives tasks to staff users."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import select

from cobro.engine.tasks import BoardView, list_tasks, task_board
from cobro.store import tables as t

from .conftest import Site
from .helpers import NOW, customer_id, work_data
from .test_messages import text_of

DAY = (datetime(2025, 3, 3, 23, 0, tzinfo=UTC), datetime(2025, 3, 4, 23, 0, tzinfo=UTC))


def shown(site: Site, query: str = "", role: str = "read-only") -> list[str]:
    """The messages of the board's rows, in order."""
    page = site.staff(role).get(f"/dashboard/tasks{query}")
    assert page.status_code == 200, page.text
    board = page.text.partition('id="tasks"')[2].partition("</table>")[0]
    return re.findall(r"</span></td>\s*<td>([^<]+)</td>", board)


def test_the_board_shows_open_due_today_overdue_and_done_tasks(site: Site) -> None:
    work_data(site.acme)
    # The dispute opened a task of its own (due the day after, at the send time).
    everything = shown(site)
    assert everything == [
        "Send Carla the statement",
        "Call Acme about F-1",
        "Item F-2 disputed: Goods returned in February",
    ]
    assert shown(site, "?view=today") == ["Call Acme about F-1"]
    assert shown(site, "?view=overdue") == ["Send Carla the statement"]
    assert shown(site, "?view=done") == []
    page = site.staff("read-only").get("/dashboard/tasks")
    text = text_of(page.text)
    # The tabs count them; nobody has them yet; each row links to its debtor.
    assert "Abiertas 3 Vencen hoy 1 Vencidas 1 Hechas" in text
    assert "Nadie 3 1 1" in text
    assert f'href="/dashboard/debtors/{customer_id(site.acme, "C3")}"' in page.text
    assert "Vencidas" in page.text.partition("Send Carla")[0].rpartition("<tr")[2]
    # A read-only user sees them but no form.
    assert 'action="/dashboard/tasks/' not in page.text
    # An unknown view is the open tasks.
    assert shown(site, "?view=nope") == everything


def test_a_collector_marks_a_task_done(site: Site) -> None:
    work = work_data(site.acme)
    collector = site.staff("collector")
    site.clock.now = NOW.replace(minute=30)
    done = collector.form(
        f"/dashboard/tasks/{work.task_overdue}/done",
        {"back": "/dashboard/tasks?view=overdue"},
        "/dashboard/tasks",
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard/tasks?view=overdue&done=done"
    page = collector.get(done.headers["location"])
    assert "La tarea está hecha." in page.text
    assert shown(site, "?view=overdue") == []
    assert shown(site, "?view=done") == ["Send Carla the statement"]
    with site.acme.engine.connect() as conn:
        (task,) = [x for x in list_tasks(conn, site.acme.company_id) if x.id == work.task_overdue]
    assert task.status == "done" and task.done_at == NOW.replace(minute=30)
    # Done already: said, nothing changes.
    again = collector.form(f"/dashboard/tasks/{work.task_overdue}/done", {}, "/dashboard/tasks")
    assert again.status_code == 409 and "Esta tarea ya está hecha." in again.text


def test_a_collector_gives_tasks_to_staff_users(site: Site) -> None:
    work = work_data(site.acme)
    collector = site.staff("collector")
    page = collector.get("/dashboard/tasks")
    # Only users who can act are offered (not the read-only one).
    offered = re.findall(r'<option value="([^"]+@[^"]+)"', page.text)
    assert set(offered) == {"admin@acme.example", "collector@acme.example"}
    given = collector.form(
        f"/dashboard/tasks/{work.task_today}/assign",
        {"assignee": "Collector@Acme.example", "back": "/dashboard/tasks"},
        "/dashboard/tasks",
    )
    assert given.status_code == 303
    assert given.headers["location"] == "/dashboard/tasks?done=assigned"
    assert "La tarea está asignada." in collector.get(given.headers["location"]).text
    assert shown(site, "?assignee=collector@acme.example") == ["Call Acme about F-1"]
    assert shown(site, "?assignee=none") == [
        "Send Carla the statement",
        "Item F-2 disputed: Goods returned in February",
    ]
    text = text_of(collector.get("/dashboard/tasks").text)
    assert "collector@acme.example 1 1 0" in text and "Nadie 2 0 1" in text
    with site.acme.engine.connect() as conn:
        tasks = {x.id: x for x in list_tasks(conn, site.acme.company_id)}
    assert tasks[work.task_today].assignee == "collector@acme.example"
    assert tasks[work.task_today].to_json(UTC)["assignee"] == "collector@acme.example"
    # Not a user of the company, or one who only reads: refused, nothing changes.
    for who, why in (
        ("admin@beta.example", "admin@beta.example is not a staff user of the company"),
        ("read-only@acme.example", "read-only@acme.example reads only"),
    ):
        refused = collector.form(
            f"/dashboard/tasks/{work.task_overdue}/assign", {"assignee": who}, "/dashboard/tasks"
        )
        assert refused.status_code == 422 and why in refused.text
    # Given back to nobody.
    back = collector.form(
        f"/dashboard/tasks/{work.task_today}/assign", {"assignee": ""}, "/dashboard/tasks"
    )
    assert back.status_code == 303
    k = t.tasks.c
    with site.acme.engine.connect() as conn:
        assignees = set(conn.execute(select(k.assignee)).scalars())
    assert assignees == {None}


def test_board_pages_follow_one_another_by_their_keys(site: Site) -> None:
    work_data(site.acme)
    ws = site.acme
    with ws.engine.connect() as conn:
        views: tuple[tuple[BoardView, list[str]], ...] = (
            ("open", ["Send Carla the statement", "Call Acme about F-1"]),
            ("today", ["Call Acme about F-1"]),
        )
        for view, order in views:
            seen: list[str] = []
            cursor = None
            for _ in range(5):
                page = task_board(conn, ws.company_id, view, DAY, cursor=cursor, limit=1)
                seen += [row.task.message for row in page.rows]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen[: len(order)] == order, view
            assert len(seen) == len(set(seen)), view
        first = task_board(conn, ws.company_id, "open", DAY, limit=1)
    assert first.next_cursor is not None
    assert shown(site, f"?cursor={first.next_cursor}")[0] == "Call Acme about F-1"
