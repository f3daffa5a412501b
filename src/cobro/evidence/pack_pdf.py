"""The evidence pack as a PDF: cover, chronological record and an annex of entry hashes.

Rendered from the JSON pack (``pack.py``), so both say the same, with the sandboxed,
autoescaping ``evidence_pdf.j2`` template and WeasyPrint as for receipts: nothing is
fetched (``data:`` URIs only; the workspace logo is embedded), and every value the
debtor or a database holds is escaped.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel.numbers import format_currency
from jinja2 import Template
from jinja2 import TemplateError as JinjaTemplateError

from cobro.config import CobroConfig
from cobro.errors import TemplateError
from cobro.evidence.pack_labels import PACK_LABELS
from cobro.render.receipt import _fonts, _html_class, data_only_fetcher
from cobro.render.templates import TemplateSet, page_environment

TEMPLATE = "evidence_pdf.j2"
KINDS = {"opened": 3, "read": 4}  # order of events at the same instant
# Entry kinds the record shows from their rows; any other is shown as the chain holds it.
SHOWN = ("delivery", "claim.", "dispute.", "promise.")


@dataclass
class Event:
    """One line of the chronological record."""

    at: datetime
    rank: int
    kind: str  # claim, delivery, opened, read, dispute, dispute_resolved, promise, ...
    title: str
    entry: int | None = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # item, due, balance
    heads: tuple[str, str, str] = ("item", "due", "balance")  # labels of ``lines``
    text: str | None = None  # a message as sent, readable
    note: str | None = None
    day_only: bool = False  # a date, not an instant (payments)


@lru_cache(maxsize=1)
def _bundled() -> Template:
    return page_environment().get_template(TEMPLATE)


def pack_pdf(
    pack: dict[str, Any], config: CobroConfig, *, templates: TemplateSet | None = None
) -> bytes:
    """The PDF of ``pack`` (a JSON pack), in the company's language (en or es)."""
    html = pack_html(pack, config, templates=templates)
    data: bytes = _html_class()(string=html, url_fetcher=data_only_fetcher()).write_pdf(
        font_config=_fonts()
    )
    return data


def pack_html(
    pack: dict[str, Any], config: CobroConfig, *, templates: TemplateSet | None = None
) -> str:
    language = config.company.locale.split("_")[0]
    labels = PACK_LABELS.get(language, PACK_LABELS["en"])
    view = _View(pack, config, labels)
    logo = config.company.branding.logo_url or ""
    try:
        template = templates.page(TEMPLATE) if templates else _bundled()
        return template.render(
            language=language if language in PACK_LABELS else "en",
            L=labels,
            company={
                "name": config.company.name,
                "color": config.company.branding.color,
                "logo_url": logo if logo.startswith("data:image/") else None,
            },
            debtor=pack["debtor"],
            period=pack["period"],
            generated_at=view.instant(pack["generated_at"]),
            chain=pack["chain"],
            checkpoint=view.checkpoint(),
            verify=pack["verify"],
            problems=[*pack["verify"]["problems"], *map(_record, pack["verify"]["records"])],
            events=view.events(),
            entries=view.annex(),
            links=len(pack["links"]),
        )
    except JinjaTemplateError as exc:
        raise TemplateError(f"{TEMPLATE}: {exc}") from exc
    except TemplateError:
        raise
    except Exception as exc:  # e.g. a filter given None in an edited template
        raise TemplateError(f"{TEMPLATE}: {type(exc).__name__}: {exc}") from exc


def _record(problem: dict[str, Any]) -> str:
    row = (
        f"{problem['table']} id {problem['id']}" if problem["id"] is not None else problem["table"]
    )
    where = f" {problem['field']}" if problem["field"] else ""
    entry = f" (evidence entry {problem['entry']})" if problem["entry"] is not None else ""
    return f"{row}{where}, debtor {problem['debtor']}: {problem['problem']}{entry}"


class _View:
    def __init__(self, pack: dict[str, Any], config: CobroConfig, labels: dict[str, str]):
        self.pack = pack
        self.tz = ZoneInfo(config.company.timezone)
        self.locale = config.company.locale
        self.L = labels
        self.bodies = {e["seq"]: _body(e["canonical"]) for e in pack["entries"]}

    def instant(self, text: str | None) -> str:
        if not text:
            return "—"
        at = datetime.fromisoformat(text).astimezone(self.tz)
        return at.isoformat(sep=" ", timespec="seconds")

    def money(self, amount: str | None, currency: str) -> str:
        if amount is None:
            return "—"
        return str(format_currency(Decimal(amount), currency, locale=self.locale))

    def checkpoint(self) -> dict[str, Any] | None:
        point = self.pack["checkpoint"]
        return {**point, "at": self.instant(point["at"])} if point else None

    def annex(self) -> list[dict[str, Any]]:
        rows = []
        for e in self.pack["entries"]:
            body = self.bodies[e["seq"]]
            rows.append({**e, "kind": body.get("kind"), "at": self.instant(body.get("at"))})
        return rows

    def events(self) -> list[dict[str, Any]]:
        events: list[Event] = []
        for claim in self.pack["claims"]:
            events += self._claim(claim)
        for view in [*self.pack["opens"], *self.pack["reads"]]:
            events.append(self._view(view))
        for dispute in self.pack["disputes"]:
            events += self._dispute(dispute)
        for promise in self.pack["promises"]:
            events += self._promise(promise)
        for payment in self.pack["payments"]:
            events.append(self._payment(payment))
        for body in self.bodies.values():
            if not body["kind"].startswith(SHOWN):
                events.append(self._other(body))
        events.sort(key=lambda e: (e.at, e.rank))
        return [
            {
                **e.__dict__,
                "heads": [self.L[h] for h in e.heads],
                "when": e.at.astimezone(self.tz).date().isoformat()
                if e.day_only
                else self.instant(e.at.isoformat()),
            }
            for e in events
        ]

    def _at(self, text: str) -> datetime:
        return datetime.fromisoformat(text).astimezone(UTC)

    def _source(self, source: str) -> str:
        return self.L.get(source, source)

    def _claim(self, claim: dict[str, Any]) -> list[Event]:
        L = self.L
        first = claim["sent_at"] or (claim["deliveries"][0]["at"] if claim["deliveries"] else None)
        at = self._at(first) if first else self._day(claim["date"])
        head = Event(
            at,
            0,
            "claim",
            f"{L['claim']}: {claim['phase_name']} ({claim['phase']})",
            claim["entry"],
            [(L["claim_no"], f"{claim['outbox_id']}, {L['planned']} {claim['date']}")],
            [
                (
                    i["number"],
                    i["due_on"],
                    self.money(i["balance_at_send"] or i["balance_now"], i["currency"]),
                )
                for i in claim["items"]
            ],
        )
        events = [head]
        for d in claim["deliveries"]:
            message = d["message"]
            fields = [(L["message_id"], d["message_id"] or "—")]
            if d["error"]:
                fields.append((L["error"], d["error"]))
            if message:
                fields.append((L["sha256"], message["sha256"]))
            events.append(
                Event(
                    self._at(d["at"]),
                    1,
                    "delivery",
                    f"{L['delivery']} {d['channel']} {L['to']} {d['recipient']} "
                    f"({d['role']}): {d['status']}",
                    d["entry"],
                    fields,
                    text=_readable(d["channel"], message) if message else None,
                )
            )
        return events

    def _day(self, text: str) -> datetime:
        return datetime.combine(date.fromisoformat(text), time(0), self.tz).astimezone(UTC)

    def _view(self, view: dict[str, Any]) -> Event:
        L, kind = self.L, view["kind"]
        return Event(
            self._at(view["at"]),
            KINDS.get(kind, 3),
            kind,
            f"{L[kind]} ({L['claim_no']} {view['claim']})",
            view["entry"],
            [(L["ip"], view["ip"] or "—"), (L["user_agent"], view["user_agent"] or "—")],
            note=L[f"{kind}_note"],
        )

    def _client(self, row: dict[str, Any]) -> list[tuple[str, str]]:
        fields = [(self.L["source"], self._source(row["source"]))]
        if row["ip"] or row["user_agent"]:
            fields += [
                (self.L["ip"], row["ip"] or "—"),
                (self.L["user_agent"], row["user_agent"] or "—"),
            ]
        return fields

    def _dispute(self, dispute: dict[str, Any]) -> list[Event]:
        L = self.L
        fields = [(L["reason"], dispute["reason"]), *self._client(dispute)]
        if dispute["attachment"]:
            a = dispute["attachment"]
            fields.append((L["attachment"], f"{a['name']} (SHA-256 {a['sha256']})"))
        events = [
            Event(
                self._at(dispute["opened_at"]),
                5,
                "dispute",
                f"{L['dispute']}: {dispute['item']}",
                dispute["entry"],
                fields,
            )
        ]
        if dispute["resolved_at"]:
            events.append(
                Event(
                    self._at(dispute["resolved_at"]),
                    6,
                    "dispute_resolved",
                    f"{L['dispute_resolved']}: {dispute['item']}",
                    dispute["resolved_entry"],
                    [(L["status"], dispute["status"]), (L["note"], dispute["resolution"] or "—")],
                )
            )
        return events

    def _promise(self, promise: dict[str, Any]) -> list[Event]:
        L = self.L
        events = [
            Event(
                self._at(promise["made_at"]),
                7,
                "promise",
                f"{L['promise']}: {promise['promised_on']} (+{promise['grace_days']} {L['grace']})",
                promise["entry"],
                self._client(promise) + ([(L["note"], promise["note"])] if promise["note"] else []),
                [
                    (i["number"], "", self.money(i["balance"], i["currency"]))
                    for i in promise["items"]
                ],
                heads=("item", "due", "promised"),
            )
        ]
        for seq in promise["status_entries"]:  # kept, broken: as the chain records them
            body = self.bodies.get(seq)
            if body is None:
                continue
            status = body["payload"].get("status") or str(body["kind"]).partition(".")[2]
            events.append(
                Event(
                    self._at(body["at"]),
                    8,
                    "promise_settled",
                    f"{L['promise_settled']}: {status}",
                    seq,
                    _fields(body["payload"], skip=("status",)),
                )
            )
        return events

    def _other(self, body: dict[str, Any]) -> Event:
        """An entry the record shows as it is (an account blocked, a payment reversed)."""
        kind = str(body.get("kind"))
        return Event(
            self._at(str(body.get("at"))),
            10,
            "other",
            f"{self.L.get(kind, kind)} ({body.get('ref')})",
            body.get("seq"),
            _fields(body.get("payload")),
        )

    def _payment(self, payment: dict[str, Any]) -> Event:
        L = self.L
        what = f"{L['payment']} {payment['external_id']}: "
        what += self.money(payment["amount"], payment["currency"])
        if payment["item"]:
            what += f" ({payment['item']})"
        if payment["reverses"]:
            what += f", {L['reverses']} {payment['reverses']}"
        return Event(
            self._day(payment["paid_on"]),
            9,
            "payment",
            what,
            note=L["not_in_chain"],
            day_only=True,
        )


def _body(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _fields(payload: Any, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """An entry's payload as (key, value) lines, nested values as compact JSON."""
    if not isinstance(payload, dict):
        return [("payload", str(payload))]
    return [
        (k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str))
        for k, v in sorted(payload.items())
        if k not in skip and v is not None
    ]


def _readable(channel: str, message: dict[str, Any]) -> str:
    """A message as sent, as a person reads it: an email's headers and text part, an
    SMS's text, a push notification's JSON indented."""
    data = base64.b64decode(message["base64"])
    if channel == "email":
        msg = BytesParser(policy=default_policy).parsebytes(data)
        if isinstance(msg, EmailMessage):
            head = "\n".join(
                f"{name}: {msg[name]}"
                for name in ("From", "To", "Cc", "Date", "Subject", "Message-ID")
                if msg[name] is not None
            )
            body = msg.get_body(("plain",))
            try:
                text = str(body.get_content()) if body is not None else message["text"]
            except (LookupError, ValueError):  # an unknown charset or a broken part
                text = message["text"]
            return f"{head}\n\n{text.strip()}"
    if channel == "push":
        try:
            return json.dumps(json.loads(data), ensure_ascii=False, indent=2)
        except ValueError:
            pass
    return str(message["text"])
