"""What an outbox row sends: the message spec of a policy phase or of a scheduled action."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cobro.channels.base import Attachment
from cobro.config import CobroConfig
from cobro.config.actions import ATTACHMENT_TYPES, MAX_ATTACHMENT_BYTES
from cobro.domain.actions import ActionType
from cobro.domain.model import Recipient
from cobro.errors import PermanentFailure
from cobro.render import filetypes

ACTION_PREFIX = "action/"
RESEND_PREFIX = "resend/"  # resend/<claim>/<n>: the n-th resend of a claim's message
# paylink/<claim>/<delivery>: the pay link of a claim by SMS, asked for on call <delivery>
PAYLINK = "paylink"


@dataclass(frozen=True)
class MessageSpec:
    key: str
    name: str
    template: str
    mode: str  # "full", "link" or "message"
    recipients: tuple[Recipient, ...]
    needs_items: bool  # nothing to say once every item is paid
    needs_overdue: bool  # only while some item is overdue (debt notices)
    hide_pay_link: bool = False
    title: str | None = None
    text: str | None = None
    attachment: str | None = None
    block_account: bool = False
    receipt_pdf: bool = False  # attach the PDF receipt of the charge
    statement_pdf: bool = False  # attach the debtor's statement of account (email)
    resend: bool = False  # the kept messages of an earlier claim, sent again as they were
    upcoming: bool = False  # re-check the subscription's charge date at sending
    # Channels for the debtor, in order of preference; internal copies go by email.
    channels: tuple[str, ...] = ("email",)
    unsubscribable: bool = False  # a policy phase a debtor may opt out of by email
    names: tuple[tuple[str, str], ...] = ()  # (language, name): ``name`` in other languages

    def name_in(self, language: str | None) -> str:
        """The name a reader of ``language`` sees: the configured one in that language,
        else ``name``."""
        return next((n for lang, n in self.names if lang == language), self.name)


NOTICE_NAMES = {
    "receipt": "Payment receipt",
    "unpaid": "Unpaid subscription reminder",
    "upcoming": "Upcoming charge reminder",
    "admin": "Admin notice",
    "banking": "Banking notice",
    PAYLINK: "Pay link asked for on a call",
}


def _notice(
    kind: str,
    template: str,
    recipient: Recipient,
    *,
    hide_pay_link: bool = True,
    receipt_pdf: bool = False,
    upcoming: bool = False,
    channels: tuple[str, ...] = ("email",),
) -> MessageSpec:
    return MessageSpec(
        key=kind,
        name=NOTICE_NAMES[kind],
        template=template,
        mode="message",
        recipients=(recipient,),
        needs_items=False,
        needs_overdue=False,
        hide_pay_link=hide_pay_link,
        receipt_pdf=receipt_pdf,
        upcoming=upcoming,
        channels=channels,
    )


def notice_spec(config: CobroConfig, step: str) -> MessageSpec | None:
    """The spec of an event-driven notice step, or None if ``step`` is not one."""
    kind = step.partition("/")[0]
    subs = config.subscriptions
    if kind == "receipt":
        return _notice(kind, subs.receipts.template, Recipient.DEBTOR, receipt_pdf=True)
    if kind == "unpaid":
        return _notice(
            kind,
            subs.unpaid.template,
            Recipient.DEBTOR,
            hide_pay_link=False,
            channels=tuple(subs.unpaid.channels),
        )
    if kind == "upcoming":
        return _notice(
            kind,
            subs.upcoming_charge.template,
            Recipient.DEBTOR,
            upcoming=True,
            channels=tuple(subs.upcoming_charge.channels),
        )
    if kind == "admin":
        return _notice(kind, subs.admin.template, Recipient.ADMIN)
    if kind == "banking":
        return _notice(kind, config.banking.template, Recipient.CONTACT)
    if kind == PAYLINK:
        return _notice(kind, "pay_link", Recipient.DEBTOR, hide_pay_link=False, channels=("sms",))
    return None


def message_spec(config: CobroConfig, step: str) -> MessageSpec:
    """The spec of ``step``: ``policy/phase``, ``action/KEY``, a notice or a resend
    (``KeyError``: none)."""
    event_notice = notice_spec(config, step)
    if event_notice is not None:
        return event_notice
    if step.startswith(RESEND_PREFIX):
        claim = step.removeprefix(RESEND_PREFIX).partition("/")[0]
        return MessageSpec(
            key="resend",
            name=f"Resend of claim {claim}",
            template="",
            mode="message",
            recipients=(),
            needs_items=False,
            needs_overdue=False,
            hide_pay_link=True,
            resend=True,
        )
    if step.startswith(ACTION_PREFIX):
        action = config.action(step.removeprefix(ACTION_PREFIX))
        notice = action.type is ActionType.DEBT_NOTICE
        return MessageSpec(
            key=action.key,
            name=action.description,
            template=action.template or ("statement" if notice else "message"),
            mode="full" if notice else "message",
            recipients=action.recipients,
            needs_items=notice,
            needs_overdue=notice,
            hide_pay_link=action.hide_pay_link or not notice,
            title=action.title,
            text=action.text,
            attachment=action.attachment,
            statement_pdf=action.attach_statement,
            names=action.names,
        )
    phase = config.phase_by_step(step)
    return MessageSpec(
        key=phase.key,
        name=phase.name,
        template=phase.template,
        mode=phase.mode.value,
        recipients=phase.recipients,
        needs_items=True,
        needs_overdue=False,
        block_account=phase.block_account,
        channels=phase.channels,
        statement_pdf=phase.attach_statement,
        unsubscribable=phase.unsubscribable,
        names=phase.names,
    )


def load_attachment(root: Path | None, relative: str) -> Attachment:
    """Read an attachment inside the workspace, checking its type and size.

    The path is resolved, symbolic links included, and must stay inside ``root``;
    the content must really be of the type its extension names (``filetypes``).
    """
    rel = PurePosixPath(relative)
    suffix = rel.suffix.lower()
    if rel.is_absolute() or ".." in rel.parts or suffix not in ATTACHMENT_TYPES:
        raise PermanentFailure(f"attachment {relative!r} is not an allowed file")
    base = (root or Path(".")).resolve()
    try:
        path = (base / rel).resolve(strict=True)
        if not path.is_relative_to(base):
            raise PermanentFailure(
                f"attachment {relative!r} leads outside the workspace (to {path}); refused"
            )
        if not path.is_file():
            raise PermanentFailure(f"attachment {relative!r} is not a regular file")
        size = path.stat().st_size
        if size > MAX_ATTACHMENT_BYTES:
            raise PermanentFailure(
                f"attachment {relative!r} is {size} bytes; the limit is {MAX_ATTACHMENT_BYTES}"
            )
        with path.open("rb") as fh:
            data = fh.read(MAX_ATTACHMENT_BYTES + 1)
    except OSError as exc:
        raise PermanentFailure(f"attachment {relative!r} cannot be read: {exc}") from exc
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise PermanentFailure(f"attachment {relative!r} is larger than {MAX_ATTACHMENT_BYTES}")
    why = filetypes.problem(suffix, data)
    if why is not None:
        raise PermanentFailure(f"attachment {relative!r} is not really a {suffix} file: {why}")
    return Attachment(rel.name, ATTACHMENT_TYPES[suffix], data)
