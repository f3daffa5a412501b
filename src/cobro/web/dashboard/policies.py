"""Policies and templates, as configured: each policy's phases (day, channels, mode,
recipients, block), and each template the configuration uses with a live preview for a
chosen debtor (or the sample ``cobro check`` renders) in both languages: subject, text,
the HTML email, and the SMS line. An admin edits a template on its page
(``template_editing``): the text in the form is previewed the same way before it is
saved (a ``Drafts`` entry keeps it for the preview's email frame).

Templates are rendered by the workspace's sandboxed renderer (``cobro.render.templates``)
as they are on disk now, with the context ``cobro check`` builds (``sample_context``)
made the debtor's: their name, their open items not disputed or promised, today. What
``cobro check`` says of the configuration is shown word for word (``check_workspace``,
kept until ``cobro.yaml`` or a file under ``templates/`` changes); a template it refuses
shows the reason it gives.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel import Locale
from fastapi import APIRouter, Request
from sqlalchemy import Connection, select
from starlette.responses import HTMLResponse, Response

from cobro.config import CobroConfig
from cobro.config.checks import check_workspace, sample_context
from cobro.config.template_files import TemplateFiles, filename, read_template
from cobro.domain.money import Money, totals_by_currency
from cobro.engine.pauses import paused_items
from cobro.errors import ConfigProblem, TemplateError
from cobro.render.labels import LANGUAGES
from cobro.render.templates import Rendered, TemplateSet
from cobro.store import tables as t
from cobro.web.dashboard.helpers import read
from cobro.web.dashboard.labels import words
from cobro.web.dashboard.session import PREFIX, Staff, StaffDep, not_found
from cobro.web.dashboard.view import company_look, render
from cobro.web.security import content_security_policy

router = APIRouter(prefix=PREFIX)
MAX_ITEMS = 200  # of a debtor's open items in a preview (a claim lists them all)


@dataclass(frozen=True)
class Use:
    """Where the configuration names a template: the field ``cobro check`` reports it at
    (None for the bundled template a scheduled action uses when it names none), what uses
    it, and the phase context a message of it gets."""

    field: str | None
    what: str
    key: str
    name: str
    mode: str


def template_uses(config: CobroConfig, said: dict[str, str] | None = None) -> dict[str, list[Use]]:
    """Every template the configuration uses, by name, with where; an event's notice
    described in the words of ``said`` (a page's language) when given."""
    from cobro.domain.actions import ActionType
    from cobro.engine.messages import NOTICE_NAMES

    found: dict[str, list[Use]] = {}

    def add(name: str, use: Use) -> None:
        found.setdefault(name, []).append(use)

    for policy, pc in config.policies.items():
        for index, ph in enumerate(pc.phases):
            add(
                ph.template,
                Use(
                    f"policies.{policy}.phases.{index}.template",
                    f"{policy} {ph.key} · {ph.name}",
                    ph.key,
                    ph.name,
                    ph.mode.value,
                ),
            )
    for index, action in enumerate(config.scheduled_actions()):
        if action.type is ActionType.TASK:
            continue
        notice = action.type is ActionType.DEBT_NOTICE
        add(
            action.template or ("statement" if notice else "message"),
            Use(
                f"actions.{index}.template" if action.template else None,
                action.description,
                action.key,
                action.description,
                "full" if notice else "message",
            ),
        )
    subs = config.subscriptions
    for where, kind, name in (
        ("subscriptions.receipts.template", "receipt", subs.receipts.template),
        ("subscriptions.upcoming_charge.template", "upcoming", subs.upcoming_charge.template),
        ("subscriptions.unpaid.template", "unpaid", subs.unpaid.template),
        ("subscriptions.admin.template", "admin", subs.admin.template),
        ("banking.template", "banking", config.banking.template),
    ):
        what = said[f"step_{kind}"] if said else NOTICE_NAMES[kind]
        add(name, Use(where, what, kind, NOTICE_NAMES[kind], "message"))
    return dict(sorted(found.items()))


_checked: dict[Path, tuple[tuple[Any, ...], list[ConfigProblem]]] = {}
_checking = threading.Lock()


def _fingerprint(root: Path) -> tuple[Any, ...]:
    """What ``cobro check``'s answer depends on in the workspace: ``cobro.yaml`` and the
    files under ``templates/`` (their size and time of change)."""
    parts: list[Any] = []
    for path in (root / "cobro.yaml", root / "templates"):
        try:
            st = path.stat()
            parts.append((str(path), st.st_mtime_ns, st.st_size))
        except OSError:
            parts.append((str(path), None))
    try:
        with os.scandir(root / "templates") as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                st = entry.stat()
                parts.append((entry.name, st.st_mtime_ns, st.st_size))
    except OSError:
        pass
    return tuple(parts)


def checked(root: Path) -> list[ConfigProblem]:
    """What ``cobro check`` says of the workspace now (kept until its files change)."""
    key = _fingerprint(root)
    with _checking:
        kept = _checked.get(root)
        if kept is not None and kept[0] == key:
            return kept[1]
        problems = check_workspace(root)
        _checked[root] = (key, problems)
        return problems


@router.get("/policies", name="dashboard_policies")
def policies(request: Request, who: StaffDep) -> Response:
    config = who.state.ws.config
    problems = checked(who.state.ws.root)
    uses = template_uses(config, words(who.language))
    by_field = {p.field: p for p in problems}
    failing = {
        name
        for name, found in uses.items()
        if any(u.field is not None and u.field in by_field for u in found)
    }
    return render(
        who,
        request,
        "policies.j2",
        {
            "policies": [
                (name, pc.description, config.policy(name), pc)
                for name, pc in config.policies.items()
            ],
            "default_policy": config.default_policy,
            "uses": uses,
            "failing": failing,
            "problems": [str(p) for p in problems],
            "minor_money": lambda minor: Money.from_minor(minor, config.company.currency),
        },
        screen="policies",
    )


def _language_locale(config: CobroConfig, language: str) -> str:
    """The formatting locale of a message in ``language``: the company's for its own
    language, else the language itself (as the dispatcher does)."""
    company = Locale.parse(config.company.locale)
    return config.company.locale if company.language == language else language


@dataclass(frozen=True)
class Debtor:
    id: int
    external_id: str
    name: str


def find_debtor(conn: Connection, company_id: int, external_id: str) -> Debtor | None:
    c = t.customers.c
    row = conn.execute(
        select(c.id, c.external_id, c.name).where(
            c.company_id == company_id, c.external_id == external_id
        )
    ).first()
    return None if row is None else Debtor(int(row.id), str(row.external_id), str(row.name))


def debtor_items(
    conn: Connection, company_id: int, debtor: Debtor, today: date
) -> list[dict[str, Any]]:
    """The debtor's open items a claim would list today (not disputed or promised), as the
    dispatcher gives them to templates."""
    r = t.receivables.c
    rows = conn.execute(
        select(
            r.id,
            r.number,
            r.kind,
            r.invoice_number,
            r.description,
            r.due_on,
            r.currency,
            r.amount_minor,
            r.balance_minor,
        )
        .where(r.company_id == company_id, r.customer_id == debtor.id, r.balance_minor > 0)
        .order_by(r.due_on, r.number, r.id)
        .limit(MAX_ITEMS)
    ).all()
    paused = paused_items(conn, company_id, [int(row.id) for row in rows])
    return [
        {
            "number": row.number,
            "kind": row.kind,
            "invoice_number": row.invoice_number,
            "description": row.description,
            "due_on": row.due_on,
            "days_overdue": (today - row.due_on).days,
            "amount": Money.from_minor(int(row.amount_minor), row.currency),
            "balance": Money.from_minor(int(row.balance_minor), row.currency),
        }
        for row in rows
        if int(row.id) not in paused
    ]


def preview_context(
    config: CobroConfig,
    language: str,
    use: Use,
    debtor: Debtor | None,
    items: list[dict[str, Any]] | None,
    today: date,
    logo: str | None,
) -> dict[str, Any]:
    """``cobro check``'s sample context, made the debtor's when one is chosen."""
    context = sample_context(config, _language_locale(config, language))
    company = dict(context["company"])  # type: ignore[call-overload]
    if logo is not None:
        company["logo_url"] = logo
    context.update(company=company, phase={"key": use.key, "name": use.name}, mode=use.mode)
    if debtor is not None and items is not None:
        context.update(
            customer={"name": debtor.name, "external_id": debtor.external_id},
            recipient={"name": debtor.name, "internal": False, "staff_copy": False},
            items=items,
            totals=list(totals_by_currency([i["balance"] for i in items]).values()),
            today=today,
        )
    return context


@dataclass(frozen=True)
class Preview:
    language: str
    full: Rendered | None
    short: Rendered | None
    problem: str | None  # the renderer's reason, when it refuses


def _templates(who: Staff, overrides: dict[str, str] | None = None) -> TemplateSet:
    ws = who.state.ws
    user_dir = ws.templates_dir
    return TemplateSet(
        user_dir if user_dir.is_dir() else None,
        Locale.parse(ws.config.company.locale).language,
        overrides=overrides,
    )


def _session_of(who: Staff) -> str:
    return hashlib.sha256(who.token.encode("utf-8")).hexdigest()


class Drafts:
    """Template texts previewed but not saved, kept a few minutes for the preview's
    email frames (a frame loads a page of its own): by a random id, for the session
    that previewed them only."""

    KEEP_SECONDS = 900.0
    MOST = 64

    def __init__(self) -> None:
        self._kept: OrderedDict[str, tuple[float, int, str, str, dict[str, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, who: Staff, name: str, texts: dict[str, str]) -> str:
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._kept[key] = (
                time.monotonic(),
                who.company_id,
                _session_of(who),
                name,
                texts,
            )
            while len(self._kept) > self.MOST:
                self._kept.popitem(last=False)
        return key

    def get(self, who: Staff, name: str, key: str) -> dict[str, str] | None:
        with self._lock:
            found = self._kept.get(key)
        if found is None or time.monotonic() - found[0] > self.KEEP_SECONDS:
            return None
        _, company_id, session, kept_name, texts = found
        if (company_id, session, kept_name) != (who.company_id, _session_of(who), name):
            return None
        return texts


def draft_overrides(files: TemplateFiles, texts: dict[str, str]) -> dict[str, str]:
    """The sources a preview of ``texts`` (by language) renders: each text in place of
    its file; an empty one where there is no file leaves the other language's in use."""
    found = {}
    for source in files.sources:
        text = texts.get(source.language)
        if text is None:
            continue
        if text.strip() or source.overridden or source.packaged is not None:
            found[filename(files.name, source.language)] = text
    return found


def _chosen(who: Staff, name: str, debtor_ref: str) -> tuple[Use, Debtor | None, Any]:
    """The template's first use (404 for a template the configuration does not use), the
    debtor asked for (404 for one the company does not have) and their items."""
    config = who.state.ws.config
    uses = template_uses(config).get(name)
    if not uses:
        raise not_found()
    if not debtor_ref:
        return uses[0], None, None
    today = who.state.today()

    def work(conn: Connection) -> tuple[Debtor | None, Any]:
        found = find_debtor(conn, who.company_id, debtor_ref[:200])
        return found, debtor_items(conn, who.company_id, found, today) if found else None

    debtor, items = read(who, work)
    if debtor is None:
        raise not_found()
    return uses[0], debtor, items


def _logo(who: Staff) -> str | None:
    look = company_look(who.state)
    logo = look["logo"]
    return str(logo) if logo else None


def _render(templates: TemplateSet, name: str, language: str, context: dict[str, Any]) -> Preview:
    try:
        full = templates.render(name, language, context)
        short = templates.render_short(name, language, context)
    except TemplateError as exc:
        return Preview(language, None, None, str(exc))
    return Preview(language, full, short, None)


def uses_of(who: Staff, name: str) -> list[Use]:
    """Where the configuration names template ``name`` (404 when it does not)."""
    uses = template_uses(who.state.ws.config, words(who.language)).get(name)
    if not uses:
        raise not_found()
    return uses


def template_page(
    who: Staff,
    request: Request,
    name: str,
    debtor: str,
    *,
    texts: dict[str, str] | None = None,
    draft: str | None = None,
    refused: list[ConfigProblem] | None = None,
    conflict: bool = False,
    done: str | None = None,
    status: int = 200,
) -> Response:
    """A template's page: its previews (of ``texts``, the form's text not saved, when
    given), its source and, for an admin, the form that edits it."""
    config = who.state.ws.config
    uses = uses_of(who, name)
    use, chosen, items = _chosen(who, name, debtor.strip())
    files = read_template(who.state.ws.root, name)
    overrides = draft_overrides(files, texts) if texts is not None else None
    templates = _templates(who, overrides)
    today = who.state.today()
    logo = _logo(who)
    previews = [
        _render(
            templates, name, lang, preview_context(config, lang, use, chosen, items, today, logo)
        )
        for lang in LANGUAGES
    ]
    fields = {u.field for u in uses if u.field}
    problems = [str(p) for p in checked(who.state.ws.root) if p.field in fields]
    shown = texts if texts is not None else {s.language: s.text for s in files.sources}
    query = {k: v for k, v in (("debtor", chosen.external_id if chosen else ""),) if v}
    if draft:
        query["draft"] = draft
    return render(
        who,
        request,
        "template.j2",
        {
            "name": name,
            "uses": uses,
            "debtor": chosen,
            "asked": debtor.strip()[:200],
            "previews": previews,
            "problems": problems,
            "said": words(who.language),
            "files": files,
            "texts": shown,
            "frame_query": urlencode(query),
            "previewing": texts is not None and not refused,
            "refused": [str(p) for p in refused or []],
            "conflict": conflict,
            "done": done if done in ("saved", "restored") else None,
        },
        screen="policies",
        status=status,
    )


@router.get("/templates/{name}", name="dashboard_template")
def template(
    request: Request, name: str, who: StaffDep, debtor: str = "", done: str | None = None
) -> Response:
    return template_page(who, request, name, debtor, done=done)


@router.get("/templates/{name}/{language}.html", name="dashboard_template_html")
def template_html(
    request: Request,
    name: str,
    language: str,
    who: StaffDep,
    debtor: str = "",
    draft: str = "",
) -> Response:
    """The HTML email of a preview, shown in the template page's sandboxed frame: no
    script, nothing loaded but this site's images (and a logo hosted elsewhere). With
    ``draft``, of the text an admin previewed without saving it."""
    if language not in LANGUAGES:
        raise not_found()
    config = who.state.ws.config
    use, chosen, items = _chosen(who, name, debtor.strip())
    overrides = None
    if draft:
        drafts: Drafts = request.app.state.dashboard_drafts
        texts = drafts.get(who, name, draft[:64])
        if texts is None:
            raise not_found()
        overrides = draft_overrides(read_template(who.state.ws.root, name), texts)
    logo = _logo(who)
    context = preview_context(config, language, use, chosen, items, who.state.today(), logo)
    found = _render(_templates(who, overrides), name, language, context)
    if found.full is None:
        from html import escape

        body = f"<!DOCTYPE html><pre>{escape(found.problem or '')}</pre>"
        response = HTMLResponse(body, status_code=422)
    else:
        response = HTMLResponse(found.full.html)
    policy = content_security_policy([logo]).split("; ")
    kept = [p for p in policy if p.split(" ")[0] in ("img-src", "base-uri", "object-src")]
    response.headers["Content-Security-Policy"] = "; ".join(
        [
            "default-src 'none'",
            *kept,
            "style-src 'unsafe-inline'",
            "form-action 'none'",
            "frame-ancestors 'self'",
            "sandbox",
        ]
    )
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response
