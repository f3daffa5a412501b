"""Scheduled actions on days of the month: debt notices, messages and staff tasks (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from cobro.domain.calendar import MonthDay, month_day_dates, next_month_day, send_instant
from cobro.domain.model import Recipient


class ActionType(StrEnum):
    DEBT_NOTICE = "debt_notice"  # statement of account, only to debtors with overdue debt
    MESSAGE = "message"  # free text or template, optional attachment, to the whole segment
    TASK = "task"  # internal reminder for staff, one per debtor


@dataclass(frozen=True)
class ScheduledAction:
    key: str
    description: str
    type: ActionType
    days: tuple[MonthDay, ...]
    segment: str
    template: str | None = None
    title: str | None = None
    text: str | None = None
    attachment: str | None = None
    hide_pay_link: bool = False
    attach_statement: bool = False  # debt notices: the statement of account as a PDF
    recipients: tuple[Recipient, ...] = (Recipient.DEBTOR,)
    task_message: str | None = None
    due_day: MonthDay | None = None
    due_after_days: int | None = None
    due_time: time = time(17, 0)
    webhook: str | None = None  # the webhook endpoint sent a ticket.requested per debtor
    names: tuple[tuple[str, str], ...] = ()  # (language, description) in other languages

    @property
    def step_id(self) -> str:
        return f"action/{self.key}"

    def task_due(self, created_on: date, timezone: str) -> datetime:
        """When a task created on ``created_on`` falls due, as a UTC instant."""
        if self.due_day is not None:
            on = next_month_day(created_on, self.due_day)
        else:
            on = created_on + timedelta(days=self.due_after_days or 0)
        return send_instant(on, self.due_time, timezone)


def due_occurrence(
    action: ScheduledAction, run_on: date, covered: date | None, max_catch_up_days: int
) -> date | None:
    """The send day a run on ``run_on`` handles for ``action``, if any.

    Send days after the last planned date (``covered``) and not older than the
    catch-up limit are due; when several were missed, only the latest is
    sent, once.
    """
    floor = run_on - timedelta(days=max_catch_up_days)
    if covered is None:
        start = floor
    elif covered >= run_on:  # a repeated or back-dated run: its own day; the keys dedupe
        start = run_on
    else:
        start = max(floor, covered + timedelta(days=1))
    dates = month_day_dates(action.days, start, run_on)
    return dates[-1] if dates else None
