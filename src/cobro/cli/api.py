"""``cobro keys``: the company's API keys; ``cobro companies``: the companies of a server
root (one directory each, one database for all)."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.table import Table

from cobro.cli.common import Options, add_row, fail, open_ws, out, print_json

keys_app = typer.Typer(help="API keys of the company (REST API, /api/v1).", no_args_is_help=True)
companies_app = typer.Typer(
    help="Companies served by one server: a directory each under a server root.",
    no_args_is_help=True,
)

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="What the key is for, e.g. 'ERP'.")],
    role: Annotated[
        str, typer.Option("--role", help="admin, collector or read-only.")
    ] = "read-only",
    as_json: Annotated[bool, typer.Option("--json", help="Print the key as JSON.")] = False,
) -> None:
    """Create a key: printed once, kept only as a digest (it cannot be shown again)."""
    from cobro.engine.apikeys import ApiKeyError, create_key
    from cobro.workspace import utcnow

    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            made, key = create_key(conn, ws.company_id, name, role, utcnow())
    except ApiKeyError as exc:
        fail(str(exc), 2)
    finally:
        ws.close()
    if as_json:
        print_json({"prefix": made.prefix, "name": made.name, "role": made.role, "key": key})
        return
    out.print(key, markup=False, highlight=False, soft_wrap=True)
    out.file.flush()
    from cobro.cli.common import err

    err.print(
        f"Key {made.prefix} ({made.role}) for {ws.config.company.id}: shown once, keep it "
        "now; send it as 'Authorization: Bearer <key>'.",
        markup=False,
        highlight=False,
    )


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False,
) -> None:
    """The company's keys (never the keys themselves): prefix, name, role, state."""
    from cobro.engine.apikeys import list_keys

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            keys = list_keys(conn, ws.company_id)
    finally:
        ws.close()
    if as_json:
        print_json(
            [
                {
                    "prefix": k.prefix,
                    "name": k.name,
                    "role": k.role,
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                    "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
                }
                for k in keys
            ]
        )
        return
    if not keys:
        out.print("No API keys: create one with 'cobro keys create --name NAME --role ROLE'.")
        return
    table = Table("prefix", "name", "role", "created", "last used", "state")
    for k in keys:
        add_row(
            table,
            k.prefix,
            k.name,
            k.role,
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "never",
            f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key's prefix (see 'cobro keys list').")],
) -> None:
    """Revoke a key: from now on it is refused (401)."""
    from cobro.engine.apikeys import ApiKeyError, revoke_key
    from cobro.workspace import utcnow

    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            done = revoke_key(conn, ws.company_id, key, utcnow())
    except ApiKeyError as exc:
        fail(str(exc), 2)
    finally:
        ws.close()
    out.print(f"Revoked key {done.prefix} ({done.name}, {done.role}).", markup=False)


@companies_app.command("add")
def companies_add(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The company's id: a-z, 0-9, '-' and '_'.")],
    name: Annotated[str | None, typer.Option("--name", help="The company's name.")] = None,
) -> None:
    """Add a company to the server root (the workspace directory, -w): a workspace in
    ROOT/SLUG sharing the root's database; creates the root's cobro-server.yaml."""
    from cobro.cli.app import create_workspace
    from cobro.workspace import SERVER_FILE, server_root, write_gitignore

    opts: Options = ctx.obj
    root = opts.workspace.resolve()
    if not SLUG.fullmatch(slug):
        fail(f"{slug!r}: a company id is 1-40 of a-z, 0-9, '-' and '_', starting with a-z/0-9", 2)
    if (root / "cobro.yaml").exists():
        fail(f"{root} is a company's workspace; a server root holds companies in subdirectories", 2)
    if server_root(root) not in (None, root):
        fail(f"{root} is inside the server root {root.parent}; add companies to that root", 2)
    marker = root / SERVER_FILE
    if not marker.exists():
        root.mkdir(parents=True, exist_ok=True)
        marker.write_text(
            "# Cobro server root: each subdirectory with a cobro.yaml is a company.\n"
            "# database: postgresql+psycopg://user@host/cobro   # default: cobro.db here\n",
            encoding="utf-8",
        )
    write_gitignore(root)  # the shared database stays out of git
    create_workspace(root / slug, slug, name or slug)
    out.print(
        f"Next: edit {root / slug / 'cobro.yaml'}, then 'cobro -w {root / slug} import ...'; "
        f"'cobro -w {root} serve' serves every company.",
        markup=False,
    )


@companies_app.command("list")
def companies_list(ctx: typer.Context) -> None:
    """The companies of the server root (the workspace directory, -w)."""
    from cobro.workspace import SERVER_FILE, company_dirs

    opts: Options = ctx.obj
    root = opts.workspace.resolve()
    if not (root / SERVER_FILE).is_file():
        fail(f"{root} is not a server root (no {SERVER_FILE}): 'cobro companies add SLUG'", 2)
    from cobro.config import load_config
    from cobro.errors import ConfigError

    table = Table("directory", "id", "name")
    for d in company_dirs(root):
        try:
            company = load_config(d / "cobro.yaml").company
            add_row(table, d.name, company.id, company.name)
        except ConfigError as exc:
            add_row(table, d.name, "?", f"cobro.yaml has {len(exc.problems)} problem(s)")
    out.print(table)
