"""Where bounces are read from: an inbound SMTP endpoint (``cobro bounces serve``, with
aiosmtpd) that takes reports sent to the companies' bounce domains, and a maildir
(``cobro bounces read``). Each report is recorded by ``cobro.engine.bounces``."""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cobro.engine.bounces import BounceOutcome, take_bounce
from cobro.engine.deliveries import Followup
from cobro.engine.deliveries import followup_of as settings_of
from cobro.workspace import Workspace

MAX_REPORT = 10 * 1024 * 1024  # a report with its original message attached


def followup_of(ws: Workspace) -> Followup:
    return settings_of(ws.config)


def record_report(
    ws: Workspace, data: bytes, envelope_to: Sequence[str], at: datetime
) -> BounceOutcome:
    return take_bounce(ws.engine, ws.company_id, data, envelope_to, at, followup_of(ws))


@dataclass
class BounceHandler:
    """aiosmtpd handler: accepts mail for the bounce domains of ``companies`` (refusing any
    other recipient: it relays nothing) and records each report for its company."""

    companies: Sequence[Workspace]
    clock: Callable[[], datetime]
    on_report: Callable[[Workspace, BounceOutcome], None] | None = None
    received: int = 0
    domains: dict[str, Workspace] = field(init=False)

    def __post_init__(self) -> None:
        self.domains = {
            ws.config.channels.email.bounces.domain: ws
            for ws in self.companies
            if ws.config.channels.email.bounces.domain
        }
        # A company without a bounce domain takes reports sent to its sender address.
        for ws in self.companies:
            sender = ws.config.company.sender
            if not ws.config.channels.email.bounces.domain and sender is not None:
                self.domains.setdefault(sender.email.rpartition("@")[2].lower(), ws)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.rpartition("@")[2].lower() not in self.domains:
            return "550 5.1.2 not a bounce address of this server"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        if not isinstance(data, bytes):
            data = str(data).encode("utf-8", "replace")
        if len(data) > MAX_REPORT:
            return "552 5.3.4 report too large"
        by_company: dict[int, tuple[Workspace, list[str]]] = {}
        for rcpt in envelope.rcpt_tos:
            ws = self.domains[rcpt.rpartition("@")[2].lower()]
            by_company.setdefault(id(ws), (ws, []))[1].append(rcpt)
        try:
            for ws, rcpts in by_company.values():
                outcome = await asyncio.to_thread(record_report, ws, data, rcpts, self.clock())
                if self.on_report is not None:
                    self.on_report(ws, outcome)
        except Exception:  # the database is away: the sending server keeps it and retries
            return "451 4.3.0 cannot record the report now, try again later"
        self.received += 1
        return "250 OK: report recorded"


@dataclass
class MaildirRead:
    read: int = 0
    matched: int = 0
    unmatched: int = 0
    not_bounces: int = 0
    outcomes: list[tuple[str, BounceOutcome]] = field(default_factory=list)


def read_maildir(ws: Workspace, directory: Path, at: datetime, every: bool = False) -> MaildirRead:
    """Record every report of the maildir's ``new/`` (and ``cur/`` with ``every``); each
    one read is moved to ``cur/`` and marked seen, so a second reading skips it."""
    box = mailbox.Maildir(directory, factory=None, create=False)
    result = MaildirRead()
    for key in list(box.keys()):
        msg = box.get_message(key)
        if msg.get_subdir() == "cur" and not every:
            continue
        data = box.get_bytes(key)
        outcome = record_report(ws, data, [], at)
        result.read += 1
        result.outcomes.append((key, outcome))
        if outcome.kind is None:
            result.not_bounces += 1
        elif outcome.matched:
            result.matched += 1
        else:
            result.unmatched += 1
        msg.set_subdir("cur")
        msg.add_flag("S")
        box[key] = msg
    return result
