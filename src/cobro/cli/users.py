"""``cobro users``: the company's staff users of the dashboard (``cobro serve``, /dashboard)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from cobro.cli.common import BAD_INPUT, add_row, err, fail, open_ws, out, print_json

users_app = typer.Typer(
    help="Staff users of the dashboard (/dashboard), per company.", no_args_is_help=True
)

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]


def _password(from_stdin: bool) -> str:
    """The password: the first line of standard input, or typed twice on a terminal."""
    from cobro.engine.users import UserError, check_password

    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        fail("standard input is not a terminal: give the password with --password-stdin", 2)
    try:
        check_password(password)
    except UserError as exc:
        fail(f"password: {exc}", BAD_INPUT)
    return password


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's email: what they log in with.")],
    role: Annotated[
        str, typer.Option("--role", help="admin, collector or read-only.")
    ] = "read-only",
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user who logs in to the dashboard with EMAIL and a password (asked twice on a
    terminal, or read with --password-stdin); kept only as an argon2id hash."""
    from cobro.engine.apikeys import ROLES
    from cobro.engine.users import UserError, add_user, normal_email
    from cobro.workspace import utcnow

    if role not in ROLES:
        fail(f"--role: {role!r} is not one of {', '.join(ROLES)}", BAD_INPUT)
    try:
        normal_email(email)
    except UserError as exc:
        fail(str(exc), BAD_INPUT)
    password = _password(password_stdin)
    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            user = add_user(conn, ws.company_id, email, role, password, utcnow())
    except UserError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    out.print(
        f"User {user.email} ({user.role}) added to {ws.config.company.id}: "
        "they log in at /dashboard/login.",
        markup=False,
        highlight=False,
    )
    _say_if_lowered()


def _say_if_lowered() -> None:
    """A warning when the password was hashed at less than the default cost."""
    from cobro.engine.users import lowered_cost

    if lowered_cost():
        err.print(
            "warning: the password was hashed at less than the default cost "
            "(COBRO_PASSWORD_...): never on a production server; it is made again at "
            "the default cost at the user's first login on a server without them.",
            markup=False,
            highlight=False,
        )


@users_app.command("list")
def users_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the users as JSON.")] = False,
) -> None:
    """The company's users: email, role, when added and when they last logged in."""
    from cobro.engine.users import list_users

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            users = list_users(conn, ws.company_id)
    finally:
        ws.close()
    if as_json:
        print_json(
            [
                {
                    "email": u.email,
                    "role": u.role,
                    "created_at": u.created_at.isoformat(),
                    "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
                }
                for u in users
            ]
        )
        return
    if not users:
        out.print("No users: add one with 'cobro users add EMAIL --role ROLE'.")
        return
    table = Table("email", "role", "added", "last login")
    for u in users:
        add_row(
            table,
            u.email,
            u.role,
            u.created_at.strftime("%Y-%m-%d %H:%M"),
            u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never",
        )
    out.print(table)


@users_app.command("remove")
def users_remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's email.")],
) -> None:
    """Remove a user: their sessions end at once."""
    from cobro.engine.users import UserError, remove_user

    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            user = remove_user(conn, ws.company_id, email)
    except UserError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    out.print(f"Removed {user.email} ({user.role}).", markup=False, highlight=False)


@users_app.command("passwd")
def users_passwd(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's email.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password (asked twice on a terminal, or --password-stdin); their
    sessions end, so they log in again with it."""
    from cobro.engine.users import UserError, find_user, set_password
    from cobro.workspace import utcnow

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            find_user(conn, ws.company_id, email)  # before asking for a password
        password = _password(password_stdin)
        with ws.engine.begin() as conn:
            user = set_password(conn, ws.company_id, email, password, utcnow())
    except UserError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    out.print(f"Password of {user.email} changed.", markup=False, highlight=False)
    _say_if_lowered()
