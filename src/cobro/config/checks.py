"""``cobro check``: the configuration, its templates and its sender, every problem listed."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from babel import Locale

from cobro.config import CobroConfig
from cobro.config.loader import Path_, parse_config, read_config_text, text_lines
from cobro.domain.money import Money
from cobro.engine.messages import load_attachment
from cobro.engine.notices import EMPTY
from cobro.errors import (
    ConfigError,
    ConfigProblem,
    PermanentFailure,
    TemplateError,
    WorkspaceError,
)
from cobro.render.labels import LANGUAGES
from cobro.render.templates import TemplateSet

if TYPE_CHECKING:
    from cobro.render.logo import Logo

SAMPLE_DATE = date(2026, 1, 15)


def sample_context(config: CobroConfig, locale: str) -> dict[str, object]:
    item = {
        "number": "INV-0001",
        "kind": "invoice",
        "invoice_number": None,
        "description": "Sample",
        "due_on": SAMPLE_DATE,
        "days_overdue": 7,
        "amount": Money.of("1250.00", config.company.currency),
        "balance": Money.of("750.00", config.company.currency),
    }
    return {
        "locale": locale,
        "company": {
            "name": config.company.name,
            "color": config.company.branding.color,
            "logo_url": "cid:logo@cobro"
            if config.company.branding.logo_file
            else config.company.branding.logo_url,
            "footer": config.company.branding.footer,
        },
        "customer": {"name": "Sample Customer", "external_id": "C-1"},
        "recipient": {"name": "Sample Customer", "internal": False, "staff_copy": False},
        "phase": {"key": "00", "name": "Sample"},
        "mode": "full",
        "items": [item],
        "totals": [item["balance"]],
        "pay_url": "https://example.invalid/p/token",
        "crm_url": None,
        "today": SAMPLE_DATE,
        "title": "Sample title",
        "text": "Sample text.",
        "notice": {
            **EMPTY,
            "event": "new_subscriber",
            "subscription": "S-1",
            "plan": "Sample plan",
            "kind": "plan",
            "price": Money.of("39.90", config.company.currency),
            "cycle": "monthly",
            "next_charge_on": SAMPLE_DATE,
            "charge": "CH-1",
            "amount": Money.of("39.90", config.company.currency),
            "charged_at": SAMPLE_DATE,
            "type": "stop_payment",
            "details": {"check": "1001"},
        },
    }


def _render_both(
    templates: TemplateSet,
    name: str,
    language: str,
    context: dict[str, object],
    voice: bool = False,
) -> None:
    """Render the email parts and the short SMS/push line of a template (and, with
    ``voice``, what a call says), and the email as a staff copy (the sales rep's or
    account manager's)."""
    templates.render(name, language, context)
    templates.render_short(name, language, context)
    if voice:
        templates.render_voice(name, language, context)
    staff = {"name": "Sample Rep", "internal": True, "staff_copy": True}
    templates.render(name, language, {**context, "recipient": staff, "pay_url": None})


def _channel_problems(
    config: CobroConfig, root: Path, cfg_file: Path, lines: dict[Path_, int]
) -> list[ConfigProblem]:
    """SMS and push set up in the file but unusable on this machine (no token, no key)."""
    from cobro.channels.push import public_key_of, read_private_key

    problems = []
    sms = config.channels.sms
    if sms is not None and not os.environ.get(sms.auth_token_env):
        where = ("channels", "sms", "auth_token_env")
        problems.append(
            ConfigProblem(
                str(cfg_file),
                lines.get(where) or lines.get(("channels", "sms")),
                ".".join(where),
                f"the environment variable {sms.auth_token_env} is not set: SMS cannot be sent",
            )
        )
    voice = config.channels.voice
    if voice is not None and not os.environ.get(voice.auth_token_env):
        where = ("channels", "voice", "auth_token_env")
        problems.append(
            ConfigProblem(
                str(cfg_file),
                lines.get(where) or lines.get(("channels", "voice")),
                ".".join(where),
                f"the environment variable {voice.auth_token_env} is not set: calls cannot be made",
            )
        )
    push = config.channels.push
    if push is not None:
        where = ("channels", "push", "private_key_file")
        try:
            public_key_of(read_private_key(push.private_key_env, root / push.private_key_file))
        except ValueError as exc:
            problems.append(
                ConfigProblem(
                    str(cfg_file),
                    lines.get(where) or lines.get(("channels", "push")),
                    ".".join(where),
                    f"no usable VAPID private key ({exc}); `cobro push keys` makes one",
                )
            )
    return problems


def _branding_problems(
    config: CobroConfig,
    root: Path,
    cfg_file: Path,
    templates: TemplateSet,
    lines: dict[Path_, int],
) -> list[ConfigProblem]:
    """A logo file that is missing or not an image; a receipt or statement PDF template
    that fails."""
    from cobro.render.logo import load_logo
    from cobro.render.receipt import receipt_html

    problems = []
    logo = None
    logo_file = config.company.branding.logo_file
    if logo_file:
        where = ("company", "branding", "logo_file")
        try:
            logo = load_logo(root, logo_file)
        except WorkspaceError as exc:
            problems.append(
                ConfigProblem(str(cfg_file), lines.get(where), ".".join(where), str(exc))
            )
    sample = sample_context(config, config.company.locale)["notice"]
    assert isinstance(sample, dict)
    for lang in LANGUAGES:
        try:
            receipt_html(
                config.company,
                "Sample",
                "C-1",
                sample,
                lang,
                config.company.locale,
                templates=templates,
                logo=logo,
            )
        except TemplateError as exc:
            receipts = ("subscriptions", "receipts")
            problems.append(
                ConfigProblem(
                    str(cfg_file), lines.get(receipts), ".".join(receipts), f"receipt PDF: {exc}"
                )
            )
            break
    problems.extend(_statement_problems(config, cfg_file, templates, logo, lines))
    return problems


def _statement_problems(
    config: CobroConfig,
    cfg_file: Path,
    templates: TemplateSet,
    logo: Logo | None,
    lines: dict[Path_, int],
) -> list[ConfigProblem]:
    """A statement PDF template (``statement_pdf.j2``) that fails, reported at the first
    phase or debt notice that attaches statements (else at ``portal``, whose page offers
    the statement for download)."""
    from cobro.render.statement import sample_statement, statement_html, statement_language

    where: tuple[str | int, ...] = ("portal",)
    users = [
        ("policies", name, "phases", index, "attach_statement")
        for name, policy_cfg in config.policies.items()
        for index, phase in enumerate(policy_cfg.phases)
        if phase.attach_statement
    ] + [
        ("actions", index, "attach_statement")
        for index, action in enumerate(config.actions)
        if action.attach_statement
    ]
    if users:
        where = users[0]
    sample = sample_statement(config, SAMPLE_DATE)
    for lang in LANGUAGES:
        language, locale = statement_language(config, lang)
        try:
            statement_html(config, sample, language, locale, templates=templates, logo=logo)
        except TemplateError as exc:
            return [
                ConfigProblem(
                    str(cfg_file),
                    lines.get(where),
                    ".".join(str(p) for p in where),
                    f"statement PDF: {exc}",
                )
            ]
    return []


def check_workspace(
    root: Path, text: str | None = None, sources: Mapping[str, str] | None = None
) -> list[ConfigProblem]:
    """Every problem of the workspace's configuration; an empty list when all is well.

    ``text``, when given, is checked as if it were ``cobro.yaml``'s content, and
    ``sources`` (template sources by file name, ``b2b_01.es.j2``) as if they were the files of
    ``templates/`` (what the dashboard is about to save): the same problems, worded and
    placed the same."""
    cfg_file = root / "cobro.yaml"
    try:
        if text is None:
            text = read_config_text(cfg_file)
        config = parse_config(text, str(cfg_file))
    except ConfigError as exc:
        return list(exc.problems)
    problems: list[ConfigProblem] = []
    if config.company.sender is None:
        problems.append(
            ConfigProblem(
                str(cfg_file),
                None,
                "company.sender.email",
                "no valid sender address is configured; nothing is sent until one is",
            )
        )
    user_dir = root / "templates"
    templates = TemplateSet(
        user_dir if user_dir.is_dir() else None,
        Locale.parse(config.company.locale).language,
        overrides=sources,
    )
    lines = text_lines(text, str(cfg_file))
    if config.company.sender is None:
        problems[0] = ConfigProblem(
            str(cfg_file), lines.get(("company",)), problems[0].field, problems[0].problem
        )
    seen: set[tuple[str, bool]] = set()
    for name, policy_cfg in config.policies.items():
        for index, phase in enumerate(policy_cfg.phases):
            calls = "voice" in phase.channels
            if (phase.template, calls) in seen:
                continue
            seen.add((phase.template, calls))
            where: tuple[str | int, ...] = ("policies", name, "phases", index, "template")
            for lang in LANGUAGES:
                try:
                    _render_both(
                        templates, phase.template, lang, sample_context(config, lang), calls
                    )
                except TemplateError as exc:
                    problems.append(
                        ConfigProblem(
                            str(cfg_file),
                            lines.get(where),
                            ".".join(str(p) for p in where),
                            str(exc),
                        )
                    )
    notices = config.subscriptions
    named: list[tuple[tuple[str | int, ...], str]] = [
        (("subscriptions", "receipts", "template"), notices.receipts.template),
        (("subscriptions", "upcoming_charge", "template"), notices.upcoming_charge.template),
        (("subscriptions", "unpaid", "template"), notices.unpaid.template),
        (("subscriptions", "admin", "template"), notices.admin.template),
        (("banking", "template"), config.banking.template),
    ]
    if config.channels.voice is not None and config.channels.voice.press_for_sms:
        named.append((("channels", "voice", "press_for_sms"), "pay_link"))  # its SMS
    for where, name in named:
        for lang in LANGUAGES:
            try:
                _render_both(templates, name, lang, sample_context(config, lang))
            except TemplateError as exc:
                problems.append(
                    ConfigProblem(
                        str(cfg_file), lines.get(where), ".".join(map(str, where)), str(exc)
                    )
                )
    for index, action_cfg in enumerate(config.actions):
        action = config.action(action_cfg.key)
        if action.template is not None:
            where = ("actions", index, "template")
            for lang in LANGUAGES:
                try:
                    _render_both(templates, action.template, lang, sample_context(config, lang))
                except TemplateError as exc:
                    problems.append(
                        ConfigProblem(
                            str(cfg_file),
                            lines.get(where),
                            ".".join(str(p) for p in where),
                            str(exc),
                        )
                    )
        if action.attachment is not None:
            where = ("actions", index, "attachment")
            try:
                load_attachment(root, action.attachment)
            except PermanentFailure as exc:
                problems.append(
                    ConfigProblem(
                        str(cfg_file), lines.get(where), ".".join(str(p) for p in where), str(exc)
                    )
                )
    problems.extend(_channel_problems(config, root, cfg_file, lines))
    problems.extend(_branding_problems(config, root, cfg_file, templates, lines))
    return problems


def webhook_problems(
    cfg_file: str, text: str, config: CobroConfig, registered: Collection[str]
) -> list[ConfigProblem]:
    """Phases and actions whose ``webhook:`` names no endpoint the company registered
    (``cobro webhooks add``): their tickets would be reported only when they are sent."""
    named: list[tuple[tuple[str | int, ...], str]] = [
        (("policies", policy, "phases", index, "webhook"), phase.webhook)
        for policy, policy_cfg in config.policies.items()
        for index, phase in enumerate(policy_cfg.phases)
        if phase.webhook
    ]
    named += [
        (("actions", index, "webhook"), action.webhook)
        for index, action in enumerate(config.actions)
        if action.webhook
    ]
    if not named:
        return []
    lines = text_lines(text, cfg_file)
    known = ", ".join(sorted(registered)) or "none yet"
    return [
        ConfigProblem(
            cfg_file,
            lines.get(where),
            ".".join(str(p) for p in where),
            f"no webhook endpoint is named {name!r} (registered: {known}); "
            f"add it with `cobro webhooks add URL --name {name}`",
        )
        for where, name in named
        if name not in registered
    ]
