"""Helpers for the tests of the screens that change ``cobro.yaml``: the file, what changed
in it line by line, the audit log, the form's digest."""

from __future__ import annotations

import difflib
import re
from typing import Any

from sqlalchemy import select

from cobro.store import tables as t
from cobro.workspace import Workspace

from .helpers import Browser

DIGEST = re.compile(r'name="digest" value="([0-9a-f]{64})"')


def config_text(ws: Workspace) -> str:
    return (ws.root / "cobro.yaml").read_text(encoding="utf-8")


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """The lines that differ: (removed, added) pairs in order; '' for none."""
    out: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines())
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        old, new = before.splitlines()[i1:i2], after.splitlines()[j1:j2]
        for n in range(max(len(old), len(new))):
            out.append((old[n] if n < len(old) else "", new[n] if n < len(new) else ""))
    return out


def audit_rows(ws: Workspace) -> list[dict[str, Any]]:
    a = t.audit_log.c
    with ws.engine.connect() as conn:
        return [
            dict(row._mapping)
            for row in conn.execute(
                select(a.actor, a.role, a.action, a.subject, a.customer_id, a.changes)
                .where(a.company_id == ws.company_id)
                .order_by(a.id)
            )
        ]


def form_of(browser: Browser, page: str) -> dict[str, str]:
    """The form token and the file's digest of ``page``."""
    response = browser.get(page)
    assert response.status_code == 200, response.text
    digest = DIGEST.search(response.text)
    assert digest, response.text
    return {"csrf": browser.csrf(page), "digest": digest.group(1)}


def html_text(text: str) -> str:
    """What a page says, with HTML's escapes read (for comparing messages)."""
    import html

    return html.unescape(text)


class _FormReader:
    """The fields a browser would send for the form with ``id`` on a page."""

    def __init__(self, form_id: str) -> None:
        from html.parser import HTMLParser

        self.form_id = form_id
        self.fields: list[tuple[str, str]] = []
        reader = self

        class Parser(HTMLParser):
            inside = False
            select: str | None = None
            first_option: str | None = None
            chose = False
            textarea: str | None = None
            text = ""

            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                a = {k: v or "" for k, v in attrs}
                if tag == "form" and a.get("id") == reader.form_id:
                    self.inside = True
                if not self.inside or "disabled" in a:
                    return
                if tag == "input" and a.get("name"):
                    kind = a.get("type", "text")
                    if kind in ("checkbox", "radio"):
                        if "checked" in a:
                            reader.fields.append((a["name"], a.get("value", "on")))
                    elif kind not in ("file", "submit"):
                        reader.fields.append((a["name"], a.get("value", "")))
                elif tag == "select":
                    self.select, self.first_option, self.chose = a.get("name"), None, False
                elif tag == "option" and self.select is not None:
                    if self.first_option is None:
                        self.first_option = a.get("value", "")
                    if "selected" in a:
                        reader.fields.append((self.select, a.get("value", "")))
                        self.chose = True
                elif tag == "textarea":
                    self.textarea, self.text = a.get("name"), ""

            def handle_endtag(self, tag: str) -> None:
                if tag == "form":
                    self.inside = False
                elif tag == "select" and self.select is not None:
                    if not self.chose and self.first_option is not None:
                        reader.fields.append((self.select, self.first_option))
                    self.select = None
                elif tag == "textarea" and self.textarea is not None:
                    reader.fields.append((self.textarea, self.text))
                    self.textarea = None

            def handle_data(self, data: str) -> None:
                if self.textarea is not None:
                    self.text += data

        self.parser = Parser(convert_charrefs=True)


def page_form(html_page: str, form_id: str) -> dict[str, Any]:
    """The form ``form_id`` of a page as a browser would send it unchanged (a field given
    several times is a list)."""
    reader = _FormReader(form_id)
    reader.parser.feed(html_page)
    assert reader.fields, f"no form {form_id!r} on the page"
    out: dict[str, Any] = {}
    for name, value in reader.fields:
        if name in out:
            out[name] = [*(out[name] if isinstance(out[name], list) else [out[name]]), value]
        else:
            out[name] = value
    return out
