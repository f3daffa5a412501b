"""The schema of event-driven notices: subscriptions (seed 003) and banking (seed 000)."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cobro.config.types import ClockTime
from cobro.domain.addresses import ascii_address
from cobro.domain.model import BANKING_TYPES as BANKING_TYPES  # re-exported


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdminNotices(_Strict):
    """Notices to the company's own address, each switchable."""

    email: str | None = None
    new_subscriber: bool = True
    cancel_requested: bool = True
    expired: bool = True
    template: str = "admin_notice"

    @field_validator("email")
    @classmethod
    def _valid(cls, v: str | None) -> str | None:
        if v is None:
            return v
        return ascii_address(v, "not a valid address")


class UpcomingCharge(_Strict):
    enabled: bool = True
    days_before: Annotated[int, Field(ge=0, le=60)] = 2
    at: ClockTime = time(9, 0)
    # In order of preference: the first that reaches the member; the next when it fails.
    channels: Annotated[list[Literal["email", "sms", "push"]], Field(min_length=1)] = ["email"]
    template: str = "upcoming_charge"


class Unpaid(_Strict):
    enabled: bool = True
    channels: Annotated[list[Literal["email", "sms", "push"]], Field(min_length=1)] = ["email"]
    template: str = "unpaid_subscription"


class Receipts(_Strict):
    enabled: bool = True
    template: str = "receipt"


class SubscriptionNotices(_Strict):
    admin: AdminNotices = AdminNotices()
    upcoming_charge: UpcomingCharge = UpcomingCharge()
    unpaid: Unpaid = Unpaid()
    receipts: Receipts = Receipts()


BankingType = Literal[
    "stop_payment", "bulk_stop_payment", "direct_deposit_change", "direct_deposit_reversal"
]


class BankingNotices(_Strict):
    enabled: bool = True
    template: str = "banking_notice"
