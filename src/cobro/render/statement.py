"""The statement of account as a PDF: every open item of a debtor, branded, in their language.

``load_statement`` reads what the statement says (the debtor, each open receivable with its
status on a date: overdue, due today, not yet due, disputed or promised, and the totals
per currency); ``statement_html`` puts it into the page template ``statement_pdf.j2`` (the
workspace's own when it has one), sandboxed and autoescaped; ``statement_pdf`` does both
and renders the PDF with WeasyPrint the way receipts are rendered (``cobro.render.receipt``):
the logo embedded as a ``data:`` URI, nothing fetched from anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from jinja2 import Template
from jinja2 import TemplateError as JinjaTemplateError
from sqlalchemy import Connection, func, select

from cobro.config import CobroConfig
from cobro.domain.money import Money, totals_by_currency
from cobro.errors import CobroError, TemplateError
from cobro.render.labels import STATEMENT_LABELS
from cobro.render.logo import Logo, workspace_logo
from cobro.render.receipt import html_pdf
from cobro.render.templates import TemplateSet, page_environment
from cobro.store import tables as t

STATEMENT_TEMPLATE = "statement_pdf.j2"
#: Statuses an item can have on the statement, most telling first.
STATUSES = ("disputed", "promised", "overdue", "due_today", "not_due")


class StatementError(CobroError):
    """A statement asked for a debtor that is not the company's."""


@dataclass(frozen=True)
class StatementItem:
    number: str
    kind: str  # invoice | instalment | credit_note
    issued_on: date | None
    due_on: date
    amount: Money
    balance: Money
    days_overdue: int  # days past the due date on the statement's date; 0 if not past
    status: str  # one of STATUSES
    promised_on: date | None = None  # an open promise to pay it by this date


@dataclass(frozen=True)
class Statement:
    customer_name: str
    customer_id: str  # the debtor's external id
    on: date
    items: tuple[StatementItem, ...]

    @property
    def totals(self) -> list[Money]:
        """The open balance per currency, never summed across currencies."""
        return list(totals_by_currency([i.balance for i in self.items]).values())

    @property
    def overdue(self) -> dict[str, Money]:
        """The part of each currency's balance that is past its due date."""
        return totals_by_currency([i.balance for i in self.items if i.days_overdue > 0])


def item_status(due_on: date, on: date, disputed: bool, promised: bool) -> str:
    """What the statement says of an item on ``on``: a dispute or promise first."""
    if disputed:
        return "disputed"
    if promised:
        return "promised"
    if due_on < on:
        return "overdue"
    return "due_today" if due_on == on else "not_due"


def load_statement(conn: Connection, company_id: int, customer_id: int, on: date) -> Statement:
    """The debtor's open items on ``on`` (balances as they are now), oldest due first.

    ``StatementError`` when ``customer_id`` is not a debtor of ``company_id``."""
    cu = t.customers.c
    who = conn.execute(
        select(cu.name, cu.external_id).where(cu.id == customer_id, cu.company_id == company_id)
    ).one_or_none()
    if who is None:
        raise StatementError(f"no debtor {customer_id} in this company")
    r, d, p, pi = t.receivables.c, t.disputes.c, t.promises.c, t.promise_items.c
    mine = (r.company_id == company_id, r.customer_id == customer_id, r.balance_minor > 0)
    disputed = set(
        conn.execute(
            select(d.receivable_id)
            .join(t.receivables, r.id == d.receivable_id)
            .where(*mine, d.company_id == company_id, d.status == "open")
        ).scalars()
    )
    promised: dict[int, date] = {
        int(row.receivable_id): row.promised_on
        for row in conn.execute(
            select(pi.receivable_id, func.min(p.promised_on).label("promised_on"))
            .join(t.promises, p.id == pi.promise_id)
            .join(t.receivables, r.id == pi.receivable_id)
            .where(*mine, p.company_id == company_id, p.status == "open")
            .group_by(pi.receivable_id)
        )
    }
    items = []
    for row in conn.execute(
        select(
            r.id,
            r.number,
            r.kind,
            r.issued_on,
            r.due_on,
            r.currency,
            r.amount_minor,
            r.balance_minor,
        )
        .where(*mine)
        .order_by(r.due_on, r.id)
    ):
        promise = promised.get(row.id)
        items.append(
            StatementItem(
                number=row.number,
                kind=row.kind,
                issued_on=row.issued_on,
                due_on=row.due_on,
                amount=Money.from_minor(row.amount_minor, row.currency),
                balance=Money.from_minor(row.balance_minor, row.currency),
                days_overdue=max((on - row.due_on).days, 0),
                status=item_status(row.due_on, on, row.id in disputed, promise is not None),
                promised_on=promise if row.id not in disputed else None,
            )
        )
    return Statement(who.name, who.external_id, on, tuple(items))


def statement_language(config: CobroConfig, language: str | None) -> tuple[str, str]:
    """(label language, formatting locale) for a debtor's ``language`` (``es``, ``es_ES``):
    a language without labels falls back to the company's, then English; the company's
    own language is formatted in the company's locale (``es`` -> ``es_ES``)."""
    company = Locale.parse(config.company.locale)
    try:
        wanted = Locale.parse(language) if language else company
    except (ValueError, TypeError, UnknownLocaleError):
        wanted = company
    if wanted.language not in STATEMENT_LABELS:
        wanted = company if company.language in STATEMENT_LABELS else Locale.parse("en")
    if wanted.language == company.language and not wanted.territory:
        return wanted.language, str(company)
    return wanted.language, str(wanted)


@lru_cache(maxsize=1)
def _bundled_template() -> Template:
    return page_environment().get_template(STATEMENT_TEMPLATE)


def statement_html(
    config: CobroConfig,
    statement: Statement,
    language: str,
    locale: str,
    *,
    templates: TemplateSet | None = None,
    logo: Logo | None = None,
) -> str:
    """The statement as HTML, from the workspace's ``statement_pdf.j2`` when ``templates``
    has one (else the bundled one), with ``logo`` (the workspace's logo file) drawn."""
    company = config.company
    if logo is not None:
        logo_url: str | None = logo.src_pdf
    else:  # only an inline logo is drawn: rendering fetches nothing from the network
        url = company.branding.logo_url or ""
        logo_url = url if url.startswith("data:image/") else None
    bank = config.portal.bank
    try:
        template = templates.page(STATEMENT_TEMPLATE) if templates else _bundled_template()
        return template.render(
            locale=locale,
            language=language,
            L=STATEMENT_LABELS.get(language, STATEMENT_LABELS["en"]),
            company={
                "name": company.name,
                "color": company.branding.color,
                "logo_url": logo_url,
                "footer": company.branding.footer,
            },
            customer={"name": statement.customer_name, "external_id": statement.customer_id},
            on=statement.on,
            items=list(statement.items),
            totals=statement.totals,
            overdue=statement.overdue,
            bank=bank.model_dump() if bank is not None else None,
            pay_instructions=config.portal.pay_instructions,
        )
    except JinjaTemplateError as exc:
        raise TemplateError(f"{STATEMENT_TEMPLATE}: {exc}") from exc
    except TemplateError:
        raise
    except Exception as exc:  # e.g. a filter given None in an edited template
        raise TemplateError(f"{STATEMENT_TEMPLATE}: {type(exc).__name__}: {exc}") from exc


def _workspace_templates(root: Path, default_language: str) -> TemplateSet | None:
    """The workspace's templates, when it has a ``templates/`` directory (compiled once
    per process; a template edited on disk is reloaded)."""
    user_dir = root / "templates"
    return _template_set(user_dir, default_language) if user_dir.is_dir() else None


@lru_cache(maxsize=8)
def _template_set(user_dir: Path, default_language: str) -> TemplateSet:
    return TemplateSet(user_dir, default_language)


def statement_pdf(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    customer_id: int,
    *,
    language: str,
    on: date,
    root: Path,
) -> bytes:
    """The debtor's statement of account on ``on`` as PDF bytes, in ``language`` (its
    labels; numbers and dates in that language's locale). ``root`` is the workspace: its
    ``templates/statement_pdf.j2`` and ``branding.logo_file`` are used when present."""
    label_language, locale = statement_language(config, language)
    statement = load_statement(conn, company_id, customer_id, on)
    company_language = Locale.parse(config.company.locale).language
    html = statement_html(
        config,
        statement,
        label_language,
        locale,
        templates=_workspace_templates(root.resolve(), company_language),
        logo=workspace_logo(root, config.company.branding.logo_file),
    )
    return html_pdf(html)


def statement_filename(customer_id: str, on: date, language: str) -> str:
    """``statement-<debtor>-<date>.pdf`` (``estado-de-cuenta-...`` in Spanish), with any
    character of the debtor's id that does not belong in a file name replaced by ``_``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", customer_id).strip("._") or "debtor"
    stem = "estado-de-cuenta" if language == "es" else "statement"
    return f"{stem}-{safe[:60]}-{on.isoformat()}.pdf"


def sample_statement(config: CobroConfig, on: date) -> Statement:
    """A statement with one item of each status, for ``cobro check`` and the benchmark."""
    cur = config.company.currency
    statuses: list[Any] = list(STATUSES)
    items = tuple(
        StatementItem(
            number=f"INV-{n:04d}",
            kind="invoice",
            issued_on=on.replace(day=1),
            due_on=on,
            amount=Money.of("1250.00", cur),
            balance=Money.of("750.00", cur),
            days_overdue=7 if status == "overdue" else 0,
            status=status,
            promised_on=on if status == "promised" else None,
        )
        for n, status in enumerate(statuses, 1)
    )
    return Statement("Sample Customer", "C-1", on, items)
