"""The ``cobro`` command: workspaces, import, daily runs, simulation and history."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cobro.cli.common import (
    BAD_INPUT,
    Options,
    QuietOption,
    add_row,
    by_channel,
    err,
    fail,
    open_ws,
    out,
    parse_date,
    print_json,
    report_not_sent,
)
from cobro.cli.lazy import LazyGroup
from cobro.errors import CobroError, ConfigError, ConfigProblem, WorkspaceError
from cobro.workspace import CLOCK_VARIABLE, CONFIG_FILE, clock_start, utcnow, write_gitignore

if TYPE_CHECKING:
    from cobro.config.schema import CobroConfig, ImportMapping


class Commands(LazyGroup):
    """Every command of ``cobro``, in the order ``cobro --help`` lists them; a command's
    module is imported when that command is run or a help page lists it."""

    lazy: ClassVar[dict[str, str]] = {
        "init": "cobro.cli.app:init",
        "check": "cobro.cli.app:check",
        "import": "cobro.cli.app:import_",
        "run": "cobro.cli.app:run",
        "simulate": "cobro.cli.app:simulate",
        "history": "cobro.cli.app:history",
        "account": "cobro.cli.staff:account",
        "dispatch": "cobro.cli.dispatch:dispatch",
        "requeue": "cobro.cli.dispatch:requeue",
        "resend": "cobro.cli.dispatch:resend",
        "serve": "cobro.cli.web:serve",
        "worker": "cobro.cli.workers:worker",
        "scheduler": "cobro.cli.workers:scheduler",
        "demo": "cobro.cli.app:demo",
        "segments": "cobro.cli.staff:segments_app",
        "event": "cobro.cli.events:event_app",
        "contacts": "cobro.cli.events:contacts_app",
        "push": "cobro.cli.events:push_app",
        "tasks": "cobro.cli.staff:tasks_app",
        "disputes": "cobro.cli.responses:disputes_app",
        "promises": "cobro.cli.responses:promises_app",
        "bounces": "cobro.cli.channels:bounces_app",
        "optouts": "cobro.cli.channels:optouts_app",
        "suppressions": "cobro.cli.channels:suppressions_app",
        "portal": "cobro.cli.web:portal_app",
        "keys": "cobro.cli.api:keys_app",
        "companies": "cobro.cli.api:companies_app",
        "users": "cobro.cli.users:users_app",
        "webhooks": "cobro.cli.webhooks:webhooks_app",
        "evidence": "cobro.cli.app:evidence_app",
    }


app = typer.Typer(
    cls=Commands,
    help="Cobro: collections and payment notifications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Workspace directory (default: here).")
    ] = Path("."),
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="COBRO_DATABASE_URL", help="Database URL (default: cobro.db)"),
    ] = None,
) -> None:
    clock = os.environ.get(CLOCK_VARIABLE)
    if clock:
        try:
            clock_start(clock)
        except WorkspaceError as exc:
            fail(str(exc), 2)
    ctx.obj = Options(workspace, db)


def create_workspace(directory: Path, slug: str | None = None, name: str | None = None) -> None:
    """A new workspace at ``directory`` from the starter (with ``company.id`` and
    ``company.name`` set when given); one-line errors."""
    target = directory / CONFIG_FILE
    if target.exists():
        fail(f"{target} already exists; nothing was changed", 2)
    from cobro.evidence.checkpoint import KEY_FILE, evidence_key

    try:
        directory.mkdir(parents=True, exist_ok=True)
        starter = resources.files("cobro") / "starter" / CONFIG_FILE
        text = starter.read_text(encoding="utf-8")
        if slug is not None:
            text = re.sub(r"(?m)^(  id: )demo(\s)", lambda m: m[1] + slug + m[2], text, count=1)
        if name is not None:
            quoted = json.dumps(name, ensure_ascii=False)
            text = re.sub(r"(?m)^(  name: ).*$", lambda m: m[1] + quoted, text, count=1)
        target.write_text(text, encoding="utf-8")
        tdir = directory / "templates"
        tdir.mkdir(exist_ok=True)
        bundled = resources.files("cobro") / "render" / "templates"
        for entry in bundled.iterdir():
            if entry.name.endswith(".j2") and not (tdir / entry.name).exists():
                (tdir / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
        write_gitignore(directory)
    except OSError as exc:
        fail(f"{exc.filename or directory}: cannot create the workspace: {exc.strerror}", 2)
    try:
        evidence_key(directory, create=True)  # signs evidence checkpoints; kept out of the DB
    except CobroError as exc:
        fail(str(exc), 2)
    out.print(
        f"Created workspace [bold]{escape(str(directory))}[/]: {CONFIG_FILE}, templates/, "
        f"{KEY_FILE}, .gitignore"
    )


def init(
    directory: Annotated[Path, typer.Argument(help="Directory of the new workspace.")],
) -> None:
    """Create a workspace: a commented cobro.yaml, editable templates and a .gitignore."""
    create_workspace(directory)
    out.print("Next: edit cobro.yaml, then `cobro check`, `cobro import ...`, `cobro run`.")


def _webhook_problems(root: Path, db: str | None) -> list[ConfigProblem]:
    """``webhook:`` names that no registered endpoint has, when cobro.yaml is valid and
    the database can be read; a note on standard error when it cannot."""
    from cobro.config.checks import webhook_problems
    from cobro.config.loader import parse_config, read_config_text
    from cobro.engine.webhooks import registered_names
    from cobro.workspace import database_url

    cfg_file = root / CONFIG_FILE
    try:
        text = read_config_text(cfg_file)
        config = parse_config(text, str(cfg_file))
    except ConfigError:
        return []  # reported by check_workspace
    if not any(p.webhook for pc in config.policies.values() for p in pc.phases) and not any(
        a.webhook for a in config.actions
    ):
        return []
    names = registered_names(database_url(root, db), config.company.id)
    if names is None:
        err.print(
            "note: the database could not be read: `webhook:` names were not checked",
            highlight=False,
            markup=False,
        )
        return []
    return webhook_problems(str(cfg_file), text, config, names)


def check(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the problems as JSON.")] = False,
) -> None:
    """Validate cobro.yaml and its templates; every problem as file:line: field: problem."""
    from dataclasses import asdict

    from cobro.config.checks import check_workspace

    opts: Options = ctx.obj
    root = opts.workspace.resolve()
    if not (root / CONFIG_FILE).exists():
        fail(f"no {CONFIG_FILE} in {root}", 2)
    problems = check_workspace(root)
    problems += _webhook_problems(root, opts.db)
    if as_json:
        print_json({"file": str(root / CONFIG_FILE), "problems": [asdict(p) for p in problems]})
        if problems:
            raise typer.Exit(BAD_INPUT)
        return
    for p in problems:
        err.print(str(p), highlight=False, markup=False)
    if problems:
        fail(f"{len(problems)} problem(s) found", 2)
    out.print(f"{root / CONFIG_FILE}: OK")


def import_(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="customers, contacts, receivables or payments")],
    file: Annotated[Path, typer.Argument(help="A CSV or JSON file.", exists=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    mapping: Annotated[
        str | None,
        typer.Option(
            "--map", help="A mapping file (.yaml) or the name of one under imports: in cobro.yaml."
        ),
    ] = None,
    decimal: Annotated[
        str | None, typer.Option("--decimal", help="The file's decimal separator: ',' or '.'.")
    ] = None,
    date_format: Annotated[
        str | None, typer.Option("--date-format", help="The file's dates, e.g. %d/%m/%Y.")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Upsert records by their external id; bad rows are reported, good rows kept."""
    from cobro.cli.progress import progress_for
    from cobro.intake.importer import KINDS, import_file

    if kind not in KINDS:
        fail(f"unknown kind {kind!r}; use one of: {', '.join(KINDS)}", 2)
    ws = open_ws(ctx)
    try:
        chosen = _import_mapping(ws.config, mapping, decimal, date_format)
        report = import_file(ws, kind, file, utcnow(), chosen, progress_for(quiet, err))
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False)
        fail("the mapping is not valid; nothing was imported", 2)
    except CobroError as exc:
        fail(str(exc), 2)
    finally:
        ws.close()
    if as_json:
        print_json(report.to_json())
    else:
        for problem in report.rejected:
            err.print(str(problem), highlight=False, markup=False)
        for warning in report.warnings:
            err.print(f"warning: {warning}", highlight=False, markup=False)
        if not quiet:
            out.print(
                f"{kind}: {report.inserted} inserted, {report.updated} updated, "
                f"{report.unchanged} unchanged, {report.rejected_rows} rejected"
                + (f", {len(report.warnings)} warning(s)" if report.warnings else "")
            )
    if report.rejected:
        raise typer.Exit(1)


def _import_mapping(
    config: CobroConfig, name: str | None, decimal: str | None, date_format: str | None
) -> ImportMapping | None:
    """The mapping ``--map`` names (a file, or an entry of ``imports:``), with the formats
    given on the command line taking precedence."""
    from pydantic import ValidationError

    from cobro.config.loader import load_mapping
    from cobro.config.schema import ImportMapping

    chosen: ImportMapping | None = None
    if name is not None:
        if Path(name).suffix.lower() in (".yaml", ".yml"):
            chosen = load_mapping(Path(name))
        elif name in config.imports:
            chosen = config.imports[name]
        else:
            known = ", ".join(config.imports) or "none"
            raise CobroError(
                f"--map: no mapping {name!r} under imports: in {CONFIG_FILE} (defined: {known}); "
                "a mapping file is named with its .yaml extension"
            )
    if decimal is None and date_format is None:
        return chosen
    given = {"decimal": decimal, "date_format": date_format}
    data = {
        **(chosen.model_dump() if chosen else {}),
        **{k: v for k, v in given.items() if v is not None},
    }
    try:
        return ImportMapping.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        option = "--" + str(problem["loc"][0]).replace("_", "-")
        raise CobroError(f"{option}: {problem['msg'].removeprefix('Value error, ')}") from None


def run(
    ctx: typer.Context,
    on: Annotated[
        str | None, typer.Option("--date", help="Date to run for (default: today).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Plan everything due on the date into the outbox, then send what is due."""
    from zoneinfo import ZoneInfo

    from cobro.cli.progress import progress_for
    from cobro.engine.runs import run_day

    ws = open_ws(ctx)
    try:
        run_on = parse_date(on, "--date")
        as_of: datetime | None = None
        if run_on is None:
            as_of = utcnow()
            run_on = as_of.astimezone(ZoneInfo(ws.config.company.timezone)).date()
        report = run_day(ws, run_on, as_of, progress=progress_for(quiet, err))
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False)
        fail("configuration error; messages stay in the outbox until it is fixed", 2)
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    if as_json:
        print_json(report.to_json())
        report_not_sent([], report.failed, report.retrying)
        return
    if quiet:  # problems only
        for e in report.errors[:20]:
            err.print(f"  {e}", highlight=False, markup=False)
        return
    out.print(
        f"{report.date}: planned {report.planned} message(s) covering {report.items} "
        f"receivable(s); sent {report.sent}, failed {report.failed}, skipped {report.skipped}"
        + (f", retrying {report.retrying}" if report.retrying else "")
        + (f", waiting for their hours {report.waiting}" if report.waiting else "")
        + (f", held back by frequency caps {report.held_back}" if report.held_back else "")
        # an email-only run says nothing more: "sent" already counts its messages
        + (by_channel(report.by_channel) if set(report.by_channel) - {"email"} else "")
        + (f"; accounts blocked {report.blocked}" if report.blocked else "")
        + (f"; accounts released {report.unblocked}" if report.unblocked else "")
        + (f"; promises kept {report.promises_kept}" if report.promises_kept else "")
        + (f"; promises broken {report.promises_broken}" if report.promises_broken else "")
    )
    report_not_sent(report.errors, report.failed, report.retrying)


def simulate(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--to", help="Last day (YYYY-MM-DD).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print every message as JSON.")] = False,
    quiet: QuietOption = False,
) -> None:
    """What each day would send, to whom, on which channel and at what cost. Changes nothing."""
    from cobro.cli.progress import progress_for
    from cobro.engine.simulate import simulate as run_simulation

    d1 = parse_date(start, "--from")
    d2 = parse_date(end, "--to")
    assert d1 is not None and d2 is not None
    if d2 < d1:
        fail("--to is before --from", 2)
    ws = open_ws(ctx)
    days: list[dict[str, Any]] = []
    table = Table(title=f"Simulation {d1} → {d2} (every message assumed sent, no payments)")
    for col in ("date", "messages", "by phase", "unreachable", "held back", "tasks", "cost"):
        table.add_column(col)
    total_cost = Decimal(0)
    total_msgs = total_tasks = total_held = total_moved = 0
    progress = progress_for(quiet, err)
    progress.start("simulate", (d2 - d1).days + 1)
    try:
        with ws.engine.connect() as conn:
            trans = conn.begin()
            try:
                for done, found in enumerate(
                    run_simulation(conn, ws.config, ws.company_id, d1, d2), 1
                ):
                    progress.advance(done, f"{total_msgs + len(found)} message(s)")
                    if not found:
                        continue
                    day = found[0].date
                    messages = [m for m in found if m.channel not in ("task", "held")]
                    tasks = [m for m in found if m.channel == "task"]
                    held = [m for m in found if m.channel == "held"]
                    cost = sum((m.cost for m in messages), Decimal(0))
                    total_cost += cost
                    total_msgs += len(messages)
                    total_tasks += len(tasks)
                    total_held += len(held)
                    # calls beyond call.max_per_7_days: on the phase's next channel, else none
                    total_moved += sum(1 for m in found if m.call_limit)
                    if as_json:
                        days.append(
                            {
                                "date": day.isoformat(),
                                "messages": [m.to_json() for m in messages],
                                "held_back": [m.to_json() for m in held],
                                "tasks": [m.to_json() for m in tasks],
                                "cost": str(cost),
                            }
                        )
                    by_phase = Counter(m.step for m in messages)
                    add_row(
                        table,
                        day.isoformat(),
                        str(len(messages)),
                        ", ".join(f"{k}: {v}" for k, v in sorted(by_phase.items())),
                        str(sum(1 for m in messages if m.channel == "none")),
                        str(len(held)),
                        str(len(tasks)),
                        str(cost),
                    )
            finally:
                trans.rollback()
    finally:
        ws.close()
    progress.finish(f"{total_msgs} message(s) over {(d2 - d1).days + 1} day(s)")
    if as_json:
        print_json(
            {
                "from": d1.isoformat(),
                "to": d2.isoformat(),
                "messages": total_msgs,
                "held_back": total_held,
                "beyond_call_limit": total_moved,
                "tasks": total_tasks,
                "cost": str(total_cost),
                "days": days,
            }
        )
        return
    out.print(table)
    out.print(
        f"Total: {total_msgs} message(s), {total_held} held back by frequency caps,"
        + (
            f" {total_moved} call(s) beyond call.max_per_7_days (on the next channel,"
            " or none left),"
            if total_moved
            else ""
        )
        + f" {total_tasks} task(s),"
        f" cost {total_cost} {ws.config.company.currency}"
    )


def history(
    ctx: typer.Context,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Only this debtor (external id).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Sent on this date or later (company time).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Sent on this date or earlier (company time).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    show_message: Annotated[
        int | None,
        typer.Option("--show-message", help="Print delivery ID's message exactly as sent."),
    ] = None,
) -> None:
    """Every claim: planned and sent dates, phase, status, receivables, and what followed in
    time order (deliveries, link opened, reading confirmed, disputes, promises, payments).
    --since/--until select by the day a claim went out."""
    from zoneinfo import ZoneInfo

    from cobro.evidence.history import claim_history

    if show_message is not None:
        _show_message(ctx, show_message, customer)
        return
    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            claims = claim_history(
                conn,
                ws.config,
                ws.company_id,
                customer,
                parse_date(since, "--since"),
                parse_date(until, "--until"),
            )
        tz = ZoneInfo(ws.config.company.timezone)
    finally:
        ws.close()
    if as_json:
        print_json([c.to_json() for c in claims])
        return
    if not claims:
        out.print(
            "No claims recorded" + (f" for {customer}" if customer else "") + ".", markup=False
        )
        return
    table = Table(title="Claim history")
    for col in (
        "planned",
        "sent",
        "customer",
        "phase",
        "status",
        "events",
        "receivables",
    ):
        table.add_column(col)
    for c in claims:
        events = "\n".join(f"{e.when(tz)} {e.text}" for e in c.events)
        items = ", ".join(
            f"{i.number} {i.balance_at_send or i.balance_now}" for i in c.items[:6]
        ) + (f" +{len(c.items) - 6}" if len(c.items) > 6 else "")
        status = c.status + (f": {c.reason}" if c.reason else "")
        add_row(
            table,
            c.occurrence_on.isoformat(),
            c.sent_on.isoformat() if c.sent_on else "—",
            c.customer,
            f"{c.step} {c.phase_name}",
            status,
            events or "—",
            items,
        )
    out.print(table)


def _show_message(ctx: typer.Context, delivery_id: int, customer: str | None) -> None:
    """Write a delivery's kept message to stdout, byte for byte."""
    import hashlib
    import sys

    from cobro.evidence.export import message_as_sent

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            kept = message_as_sent(conn, ws.company_id, delivery_id)
    finally:
        ws.close()
    if kept is None or (customer is not None and kept.customer != customer):
        fail(
            f"--show-message: delivery {delivery_id} has no kept message"
            + (f" for {customer}" if customer else ""),
            2,
        )
    if hashlib.sha256(kept.data).hexdigest() != kept.sha256:
        err.print(
            f"warning: delivery {delivery_id}: the kept message does not match its SHA-256",
            highlight=False,
            markup=False,
        )
    sys.stdout.buffer.write(kept.data)
    sys.stdout.buffer.flush()


evidence_app = typer.Typer(help="The tamper-evident history.", no_args_is_help=True)


@evidence_app.command("verify")
def evidence_verify(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the hash chain, check its signed checkpoints, and check every claim,
    claimed item, delivery, view, dispute and promise against it. Exit 1 names each record
    that does not hold."""
    from cobro.evidence.verify import verify_evidence

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            report = verify_evidence(conn, ws.company_id, ws.config.company.id, ws.root)
    except CobroError as exc:
        fail(str(exc), 2)
    finally:
        ws.close()
    if as_json:
        print_json(report.to_json())
        if not report.ok:
            raise typer.Exit(1)
        return
    for warning in report.warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False, soft_wrap=True)
    for problem in [*report.problems, *map(str, report.records)]:
        err.print(problem, highlight=False, markup=False, soft_wrap=True)
    if not report.ok:
        fail(f"evidence does not hold: {len(report.problems) + len(report.records)} problem(s)")
    point = report.checkpoint
    signed = f"; signed checkpoint at entry {point.seq} ({point.at.isoformat()})" if point else ""
    out.print(
        f"{report.last_seq} entries, chain intact, head {report.chain.head}{signed}; "
        "claims, deliveries, views, disputes and promises match it",
        markup=False,
        soft_wrap=True,
    )


@evidence_app.command("export")
def evidence_export(
    ctx: typer.Context,
    debtor: Annotated[
        str | None, typer.Argument(metavar="CUSTOMER", help="The debtor (external id).")
    ] = None,
    target: Annotated[
        Path | None,
        typer.Option("--out", help="FILE.json, FILE.pdf, or a directory (any other name)."),
    ] = None,
    customer: Annotated[
        str | None, typer.Option("--customer", help="The debtor, as the argument (older form).")
    ] = None,
) -> None:
    """One debtor's evidence pack: a self-contained JSON file a third party can check, a PDF
    document (cover, chronological record, annex of hashes), or a directory of files."""
    from sqlalchemy import select

    from cobro.engine.runs import templates_for
    from cobro.evidence.export import export
    from cobro.store import tables as t

    if debtor is not None and customer is not None and debtor != customer:
        fail(f"CUSTOMER {debtor!r} and --customer {customer!r} name different debtors", 2)
    who = debtor if debtor is not None else customer
    if who is None:
        fail("name the debtor: cobro evidence export CUSTOMER --out FILE.pdf|FILE.json|DIR", 2)
    if target is None:
        fail("--out: where to write the pack (FILE.pdf, FILE.json or a directory)", 2)
    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            cu = t.customers.c
            cid = conn.execute(
                select(cu.id).where(cu.company_id == ws.company_id, cu.external_id == who)
            ).scalar()
        if cid is None:
            fail(f"CUSTOMER: no debtor {who!r}", 2)
        pack = export(
            ws.engine,
            ws.config,
            ws.company_id,
            ws.root,
            int(cid),
            target,
            utcnow(),
            templates=templates_for(ws),
        )
    except (CobroError, OSError) as exc:
        fail(f"{target}: {exc}", 2)
    finally:
        ws.close()
    report = "verify.json" if pack.kind == "directory" else "its verify section"
    out.print(
        f"{pack.path}: {pack.entries} evidence entries, {pack.messages} message(s) as sent, "
        + ("evidence holds" if pack.verify.ok else f"evidence does NOT hold (see {report})"),
        markup=False,
    )
    if not pack.verify.ok:
        raise typer.Exit(1)


def demo(
    directory: Annotated[Path, typer.Argument(help="Directory of the demo workspace.")] = Path(
        "demo"
    ),
    days: Annotated[int, typer.Option("--days", help="Days to simulate.")] = 90,
    start: Annotated[str | None, typer.Option("--start", help="First day (YYYY-MM-DD).")] = None,
    debtors: Annotated[int, typer.Option("--debtors", help="Number of debtors.")] = 200,
) -> None:
    """A demo company: import, then one collections run per day, every email caught locally."""
    from cobro.cli.demo import run_demo

    first = parse_date(start, "--start") or date(2026, 1, 5)
    if (directory / ".cobro-demo").exists():
        shutil.rmtree(directory)
    try:
        wide = out if out.is_terminal else Console(width=120)
        run_demo(directory, first, days, debtors, wide)
    except CobroError as exc:
        fail(str(exc))


def _user_error(exc: Exception) -> str | None:
    """The one-line reason of an error that is the user's or the environment's to fix
    (a file, the database), or None for a fault of Cobro's, whose traceback is shown."""
    if isinstance(exc, CobroError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import InterfaceError, OperationalError

        if isinstance(exc, OperationalError | InterfaceError):
            cause = exc.orig if exc.orig is not None else exc
            return "database: " + " ".join(str(cause).split())
    return None


def main() -> None:
    try:
        app()
    except Exception as exc:
        reason = _user_error(exc)
        if reason is None:
            raise
        err.print(f"[bold red]error:[/] {escape(reason)}", highlight=False)
        sys.exit(BAD_INPUT)
