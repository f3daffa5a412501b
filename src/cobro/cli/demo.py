"""``cobro demo``: a generated company collected for a number of simulated days."""

from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, select

from cobro.domain.money import Money
from cobro.engine.runs import run_day
from cobro.errors import WorkspaceError
from cobro.intake.importer import import_file, import_records
from cobro.store import tables as t
from cobro.workspace import CONFIG_FILE, Workspace, open_workspace

MARKER = ".cobro-demo"
FIRST = [
    "Ana",
    "Luis",
    "María",
    "Javier",
    "Lucía",
    "Carlos",
    "Elena",
    "Pablo",
    "Sara",
    "Diego",
    "Laura",
    "Jorge",
    "Marta",
    "David",
    "Paula",
    "Alberto",
    "Emma",
    "John",
    "Olivia",
    "Peter",
]
LAST = [
    "García",
    "Martínez",
    "López",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Martín",
    "Jiménez",
    "Ruiz",
    "Hernández",
    "Díaz",
    "Moreno",
    "Álvarez",
    "Romero",
    "Smith",
    "Brown",
]
TRADE = [
    "Suministros",
    "Ferretería",
    "Distribuciones",
    "Talleres",
    "Construcciones",
    "Papelería",
    "Electro",
    "Hostelería",
    "Farmacia",
    "Transportes",
    "Bodegas",
    "Textil",
]
PLACE = [
    "del Norte",
    "Levante",
    "Castilla",
    "Atlántico",
    "Mediterráneo",
    "Sierra",
    "Ribera",
    "Centro",
    "Sur",
    "Galicia",
    "Aragón",
    "Ibérica",
]
SUFFIX = ["S.L.", "S.A.", "S.Coop.", "S.L.U."]


@dataclass(frozen=True)
class PlannedPayment:
    on: date
    customer: str
    receivable: str
    amount: Decimal
    currency: str


def _money(rng: random.Random, lo: int, hi: int) -> Decimal:
    return Decimal(rng.randint(lo * 100, hi * 100)) / 100


def generate(
    root: Path, start: date, days: int, debtors: int, seed: int = 7
) -> list[PlannedPayment]:
    """Write demo CSV files under ``root/data`` and return the payments to arrive day by day."""
    rng = random.Random(seed)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    customers, contacts, receivables, payments_before = [], [], [], []
    future: list[PlannedPayment] = []
    reps = [
        ("Comercial Norte", "ventas.norte@demo.example"),
        ("Comercial Sur", "ventas.sur@demo.example"),
    ]
    managers = [("Gestora de cuentas", "cuentas@demo.example")]
    end = start + timedelta(days=days)
    for n in range(1, debtors + 1):
        business = rng.random() < 0.6
        ext = f"{'B' if business else 'P'}{n:04d}"
        lang = "en" if rng.random() < 0.2 else "es"
        if business:
            name = f"{rng.choice(TRADE)} {rng.choice(PLACE)} {rng.choice(SUFFIX)}"
        else:
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.choice(LAST)}"
        slug = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())[:20]
        email = "" if rng.random() < 0.04 else f"{slug}{n}@example.com"
        customers.append(
            {
                "external_id": ext,
                "name": name,
                "kind": "business" if business else "person",
                "group": rng.choice(["retail", "wholesale", "horeca"]) if business else "cards",
                "language": lang,
                "email": email,
                "phone": f"+3461{rng.randint(1000000, 9999999)}",
                "tags": "vip" if rng.random() < 0.1 else "",
            }
        )
        if business:
            if rng.random() < 0.5:
                contacts.append(
                    {
                        "external_id": f"{ext}-AP",
                        "customer": ext,
                        "name": f"Administración {name}",
                        "email": f"admin.{slug}{n}@example.com",
                        "roles": "billing",
                        "language": lang,
                    }
                )
            rep = rng.choice(reps)
            contacts.append(
                {
                    "external_id": f"{ext}-REP",
                    "customer": ext,
                    "name": rep[0],
                    "email": rep[1],
                    "roles": "sales_rep",
                    "language": "es",
                }
            )
            mgr = managers[0]
            contacts.append(
                {
                    "external_id": f"{ext}-AM",
                    "customer": ext,
                    "name": mgr[0],
                    "email": mgr[1],
                    "roles": "account_manager",
                    "language": "es",
                }
            )
        profile = rng.choices(["prompt", "reminded", "late", "never"], [35, 30, 25, 10])[0]
        docs: list[tuple[str, str, str | None, date, Decimal, str]] = []
        if business:
            for k in range(rng.randint(2, 6)):
                inv = f"F26-{n:04d}{k}"
                due = start + timedelta(days=rng.randint(-70, days - 10))
                currency = "USD" if rng.random() < 0.05 else "EUR"
                total = _money(rng, 150, 12000)
                if rng.random() < 0.3:
                    parts = 3
                    share = (total / parts).quantize(Decimal("0.01"))
                    for p in range(parts):
                        amount = share if p < parts - 1 else total - share * (parts - 1)
                        docs.append(
                            (
                                f"{inv}-{p + 1}",
                                "instalment",
                                inv,
                                due + timedelta(days=30 * p),
                                amount,
                                currency,
                            )
                        )
                else:
                    docs.append((inv, "invoice", None, due, total, currency))
        else:
            day = rng.randint(1, 28)
            first_due = date(start.year, start.month, day) - timedelta(days=31)
            for m in range(days // 30 + 2):
                due = first_due + timedelta(days=30 * m)
                docs.append(
                    (f"EC-{n:04d}-{m + 1:02d}", "invoice", None, due, _money(rng, 40, 1800), "EUR")
                )
        for number, kind, invoice, due, amount, currency in docs:
            rid = f"R-{number}"
            receivables.append(
                {
                    "external_id": rid,
                    "customer": ext,
                    "kind": kind,
                    "number": number,
                    "invoice": invoice or "",
                    "issued_on": (due - timedelta(days=30)).isoformat(),
                    "due_on": due.isoformat(),
                    "currency": currency,
                    "amount": str(amount),
                    "description": "Suministros" if business else "Estado de cuenta",
                }
            )
            delay = {
                "prompt": rng.randint(-6, 0),
                "reminded": rng.randint(1, 12),
                "late": rng.randint(18, 55),
                "never": 10_000,
            }[profile]
            pay_on = due + timedelta(days=delay)
            partial = rng.random() < 0.2
            chunks = [amount]
            if partial:
                first_part = (amount * Decimal("0.4")).quantize(Decimal("0.01"))
                chunks = [first_part, amount - first_part]
            for i, chunk in enumerate(chunks):
                on = (
                    pay_on + timedelta(days=12 * i)
                    if i
                    else pay_on - timedelta(days=5 if partial else 0)
                )
                if on >= end:
                    continue
                if on < start:
                    payments_before.append(
                        {
                            "external_id": f"P-{number}-{i}",
                            "customer": ext,
                            "receivable": rid,
                            "paid_on": on.isoformat(),
                            "amount": str(chunk),
                            "currency": currency,
                        }
                    )
                else:
                    future.append(PlannedPayment(on, ext, rid, chunk, currency))
    _write(data / "customers.csv", customers)
    _write(data / "contacts.csv", contacts)
    _write(data / "receivables.csv", receivables)
    _write(data / "payments.csv", payments_before)
    future.sort(key=lambda p: (p.on, p.customer, p.receivable))
    return future


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def overdue_by_currency(ws: Workspace, on: date) -> dict[str, Decimal]:
    r = t.receivables.c
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(r.currency, func.sum(r.balance_minor))
            .where(r.company_id == ws.company_id, r.balance_minor > 0, r.due_on < on)
            .group_by(r.currency)
        ).all()
    return {cur: Money.from_minor(int(total), cur).amount for cur, total in sorted(rows)}


def run_demo(root: Path, start: date, days: int, debtors: int, console: Console) -> None:
    """Create the demo workspace at ``root`` and collect for ``days`` days from ``start``."""
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise WorkspaceError(f"{root} is not empty and is not a demo workspace; choose another")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("generated by cobro demo\n", encoding="utf-8")
    starter = resources.files("cobro") / "starter" / CONFIG_FILE
    (root / CONFIG_FILE).write_text(starter.read_text(encoding="utf-8"), encoding="utf-8")
    future = generate(root, start, days, debtors)
    ws = open_workspace(root, f"sqlite:///{(root / 'cobro.db').resolve()}")
    clock = datetime.combine(start - timedelta(days=1), time(18), tzinfo=UTC)
    for kind in ("customers", "contacts", "receivables", "payments"):
        rep = import_file(ws, kind, root / "data" / f"{kind}.csv", clock)
        console.print(f"imported {kind}: {rep.inserted} new, {len(rep.rejected)} rejected")
    by_day: dict[date, list[PlannedPayment]] = defaultdict(list)
    for p in future:
        by_day[p.on].append(p)
    table = Table(title=f"Collections, {start} → {start + timedelta(days=days - 1)}")
    for col in ("date", "paid", "sent by email", "by phase", "failed", "skipped", "overdue"):
        table.add_column(col, overflow="fold", no_wrap=col in ("date", "overdue"))
    phases: Counter[str] = Counter()
    sent = failed = skipped = deliveries = paid_count = blocked = unblocked = tasks = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("collecting", total=days)
        for i in range(days):
            day = start + timedelta(days=i)
            todays = by_day.get(day, [])
            if todays:
                rows: list[tuple[int, dict[str, str | None]]] = [
                    (
                        n + 1,
                        {
                            "external_id": f"P-{day:%Y%m%d}-{n}",
                            "customer": p.customer,
                            "receivable": p.receivable,
                            "paid_on": day.isoformat(),
                            "amount": str(p.amount),
                            "currency": p.currency,
                        },
                    )
                    for n, p in enumerate(todays)
                ]
                at = datetime.combine(day, time(7), tzinfo=UTC)
                import_records(ws, "payments", rows, at, f"bank feed {day}")
                paid_count += len(todays)
            report = run_day(ws, day)
            sent += report.sent
            failed += report.failed
            skipped += report.skipped
            deliveries += report.deliveries
            blocked += report.blocked
            tasks += report.tasks
            unblocked += report.unblocked
            day_phases = _phases_sent_on(ws, day)
            phases.update(day_phases)
            overdue = overdue_by_currency(ws, day)
            if report.planned or todays:
                table.add_row(
                    day.isoformat(),
                    str(len(todays)),
                    str(report.sent),
                    _compact(day_phases),
                    str(report.failed),
                    str(report.skipped),
                    "; ".join(f"{v:,.2f} {k}" for k, v in overdue.items()),
                )
            progress.advance(task)
    console.print(table)
    final = overdue_by_currency(ws, start + timedelta(days=days))
    summary = Table(title="Totals")
    summary.add_column("what")
    summary.add_column("value", overflow="fold")
    summary.add_row("payments received", str(paid_count))
    summary.add_row("claims sent", str(sent))
    summary.add_row("emails delivered (caught)", str(deliveries))
    summary.add_row("claims failed (no address)", str(failed))
    summary.add_row("claims skipped (paid before sending)", str(skipped))
    summary.add_row("claims by phase", _compact(phases))
    summary.add_row("claims by channel", f"email: {sent}")
    summary.add_row("accounts blocked (phase 05) / released", f"{blocked} / {unblocked}")
    summary.add_row("staff tasks created", f"{tasks} (cobro -w {root} tasks list)")
    summary.add_row("still overdue", "; ".join(f"{v:,.2f} {k}" for k, v in final.items()) or "0")
    console.print(summary)
    console.print(f"Caught emails: [bold]{root / 'mail'}[/] (one .eml per message, by day)")
    console.print(f"History: [bold]cobro -w {root} history[/] (or --customer B0001, --json)")
    console.print(f"Evidence: [bold]cobro -w {root} evidence verify[/]")
    _portal_hint(ws, root, console)
    ws.close()


def _portal_hint(ws: Workspace, root: Path, console: Console) -> None:
    """How to open the portal page of the debtor claimed last: a fresh link to it."""
    from cobro.engine.links import link_url, make_token
    from cobro.web.portal.queries import latest_claim
    from cobro.workspace import utcnow

    o, c = t.outbox.c, t.customers.c
    with ws.engine.connect() as conn:
        customer = conn.execute(
            select(c.external_id)
            .join(t.outbox, o.customer_id == c.id)
            .where(o.company_id == ws.company_id, o.status == "sent", o.step.like("b2b/%"))
            .order_by(o.occurrence_on.desc(), o.id.desc())
            .limit(1)
        ).scalar()
        found = latest_claim(conn, ws.config, ws.company_id, customer) if customer else None
    if customer is None or found is None:
        return
    customer = str(customer)
    token = make_token(ws.secret, ws.config.company.id, customer, found.id, utcnow())
    console.print(
        f"Portal: [bold]cobro -w {root} serve[/], then open "
        f"{link_url('http://127.0.0.1:8000/portal', token)} ({escape(customer)}'s latest claim; "
        f"[bold]cobro -w {root} portal link {escape(customer)} "
        "--base http://127.0.0.1:8000/portal[/] "
        "makes another)",
        soft_wrap=True,
    )


def _compact(phases: Counter[str]) -> str:
    """``b2b/00: 3, b2b/01: 1`` as ``b2b 00×3 01×1``."""
    by_policy: dict[str, list[str]] = defaultdict(list)
    for step, n in sorted(phases.items()):
        policy, _, key = step.partition("/")
        by_policy[policy].append(f"{key}×{n}")
    return "  ".join(f"{p} {' '.join(keys)}" for p, keys in by_policy.items())


def _phases_sent_on(ws: Workspace, day: date) -> Counter[str]:
    o = t.outbox.c
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(o.step, func.count())
            .where(o.company_id == ws.company_id, o.occurrence_on == day, o.status == "sent")
            .group_by(o.step)
        ).all()
    return Counter({step: int(n) for step, n in rows})
