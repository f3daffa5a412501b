"""``cobro users``: staff users of the dashboard added, listed, given a new password and
removed from the command line; bad input gets one line and exit status 2."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from .cli import free_port, run_cobro, start_serving


def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    subprocess.run([sys.executable, "-m", "cobro", "init", str(root)], check=True)
    return root


def test_users_are_added_listed_given_a_password_and_removed(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    added = run_cobro(
        ws,
        "users",
        "add",
        "Ana@Example.com",
        "--role",
        "collector",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert "ana@example.com (collector) added" in added.stdout
    # The suite hashes at a lowered cost (tests/cheap_passwords.py): said.
    assert "hashed at less than the default cost" in added.stderr
    listed = json.loads(run_cobro(ws, "users", "list", "--json").stdout)
    assert [(u["email"], u["role"], u["last_login_at"]) for u in listed] == [
        ("ana@example.com", "collector", None)
    ]
    with sqlite3.connect(ws / "cobro.db") as db:
        (stored,) = db.execute("SELECT password_hash FROM staff_users").fetchone()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    run_cobro(
        ws,
        "users",
        "passwd",
        "ana@example.com",
        "--password-stdin",
        stdin="another long password\n",
    )
    with sqlite3.connect(ws / "cobro.db") as db:
        (changed,) = db.execute("SELECT password_hash FROM staff_users").fetchone()
    assert changed != stored
    assert "Removed ana@example.com" in run_cobro(ws, "users", "remove", "ANA@example.com").stdout
    assert json.loads(run_cobro(ws, "users", "list", "--json").stdout) == []


def test_bad_input_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    cases = [
        (("users", "add", "not-an-email", "--password-stdin"), "x" * 12, "is not an email address"),
        (
            ("users", "add", "a@example.com", "--role", "boss", "--password-stdin"),
            "x" * 12,
            "--role: 'boss' is not one of read-only, collector, admin",
        ),
        (("users", "add", "a@example.com", "--password-stdin"), "short", "at least 10 characters"),
        (("users", "add", "a@example.com"), "", "give the password with --password-stdin"),
        (("users", "remove", "nobody@example.com"), "", "no user nobody@example.com"),
        (("users", "passwd", "nobody@example.com", "--password-stdin"), "x" * 12, "no user"),
    ]
    for args, stdin, said in cases:
        proc = run_cobro(ws, *args, ok=False, stdin=stdin + "\n" if stdin else "")
        assert proc.returncode == 2, (args, proc.stderr)
        assert said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    run_cobro(ws, "users", "add", "a@example.com", "--password-stdin", stdin="x" * 12 + "\n")
    again = run_cobro(
        ws, "users", "add", "A@example.com", "--password-stdin", ok=False, stdin="y" * 12 + "\n"
    )
    assert again.returncode == 2 and "already a user" in again.stderr


def test_a_bad_password_cost_is_one_line_for_users_and_serve(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    bad = {"COBRO_PASSWORD_TIME_COST": "lots"}
    for args in (
        ("users", "add", "a@example.com", "--password-stdin"),
        ("serve", "--port", str(free_port())),
    ):
        proc = run_cobro(ws, *args, ok=False, stdin="x" * 12 + "\n", env=bad)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip() == (
            "error: COBRO_PASSWORD_TIME_COST: 'lots' is not a whole number from 1 to 64"
        ), proc.stderr
    assert json.loads(run_cobro(ws, "users", "list", "--json").stdout) == []


def test_serve_says_when_passwords_are_hashed_at_a_lowered_cost(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    proc, _port, line = start_serving(ws)  # the suite's environment lowers the cost
    try:
        assert line.startswith("Serving ")
    finally:
        proc.terminate()
        try:
            _out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()  # left running when it did not stop
            proc.wait()
    assert "Staff passwords are hashed at less than the default cost" in err, err
