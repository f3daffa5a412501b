"""The schema of segments and scheduled actions in ``cobro.yaml``."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from cobro.config.types import ClockTime, LocalNames
from cobro.domain.actions import ActionType
from cobro.domain.model import CONFIGURABLE_RECIPIENTS, Recipient

MonthDayField = Annotated[int, Field(ge=1, le=31)] | Literal["last"]
ATTACHMENT_TYPES = {
    ".pdf": "application/pdf",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


def _configurable(v: Recipient) -> Recipient:
    if v not in CONFIGURABLE_RECIPIENTS:
        raise ValueError(f"recipients are {', '.join(r.value for r in CONFIGURABLE_RECIPIENTS)}")
    return v


ConfigurableRecipient = Annotated[Recipient, AfterValidator(_configurable)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    min: Decimal | None = None
    max: Decimal | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class DayRange(_Strict):
    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DayRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class SegmentConfig(_Strict):
    """Debtors matching every condition given."""

    description: str | None = None
    kind: Literal["person", "business"] | None = None
    group: str | list[str] | None = None
    language: str | None = None
    tags: list[str] = []
    attributes: dict[str, str] = {}
    policy: str | None = None
    blocked: bool | None = None
    overdue_amount: Range | None = None
    open_amount: Range | None = None
    days_overdue: DayRange | None = None


class ActionConfig(_Strict):
    key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
    description: str
    names: LocalNames = Field(
        default={},
        description="the description in other languages, by language code (es: ..., en: "
        "...): what a debtor or a staff member reading in that language sees",
    )
    type: ActionType
    days: list[MonthDayField] = Field(min_length=1, max_length=3)
    segment: str
    template: str | None = None
    title: str | None = None
    text: str | None = None
    attachment: str | None = None
    hide_pay_link: bool = False
    attach_statement: bool = False
    recipients: list[ConfigurableRecipient] = [Recipient.DEBTOR]
    message: str | None = None
    due_day: MonthDayField | None = None
    due_after_days: Annotated[int, Field(ge=0, le=366)] | None = None
    due_time: ClockTime = time(17, 0)
    webhook: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")] | None = Field(
        default=None,
        description="the webhook endpoint (its name) sent a ticket.requested for each debtor",
    )

    @field_validator("attachment")
    @classmethod
    def _attachment(cls, v: str | None) -> str | None:
        if v is None:
            return v
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError("an attachment is a path inside the workspace")
        if p.suffix.lower() not in ATTACHMENT_TYPES:
            raise ValueError(
                f"attachments may be {', '.join(sorted(ATTACHMENT_TYPES))}, not {p.suffix or v!r}"
            )
        return v

    @model_validator(mode="after")
    def _by_type(self) -> ActionConfig:
        if len(set(self.days)) != len(self.days):
            raise ValueError("a send day is listed twice")
        if self.type is ActionType.TASK:
            if not self.message:
                raise ValueError("a task needs a message")
            if self.due_day is not None and self.due_after_days is not None:
                raise ValueError("give due_day or due_after_days, not both")
            for name in ("template", "title", "text", "attachment"):
                if getattr(self, name):
                    raise ValueError(f"{name} does not apply to a task")
        else:
            if self.message:
                raise ValueError("message is for tasks; use text (or a template)")
            if (
                self.type is ActionType.MESSAGE
                and self.template is None
                and not (self.title and self.text)
            ):
                raise ValueError("a message needs a template, or a title (its subject) and a text")
            if self.type is ActionType.DEBT_NOTICE and self.attachment:
                raise ValueError("attachments go with messages, not debt notices")
        if self.attach_statement and self.type is not ActionType.DEBT_NOTICE:
            raise ValueError(
                "attach_statement goes with debt notices (type: debt_notice), "
                f"not with a {self.type.value}"
            )
        return self
