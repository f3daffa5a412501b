"""``/banking-notices``: which contacts receive each banking notice (stop payment, bulk stop
payment, direct-deposit change, direct-deposit reversal), as ``cobro contacts`` sets them.

Only a contact with the ``banking`` (banking & funds transfer) role may be assigned; an
assignment of several contacts is all or none. With nobody assigned, a type's notices go
to the debtor's primary contacts. Changing assignments is a company setting: ``admin``
keys only; reading them, any key.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from cobro.domain.model import BANKING_TYPES
from cobro.engine.banking import AssignmentRefused, assign, assignments, unassign
from cobro.web.api.auth import Admin, Caller, Reader
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import ExternalId, Strict
from cobro.web.api.problems import FieldError, Problem, not_found

router = APIRouter(prefix="/banking-notices", tags=["banking notices"], route_class=IdempotentRoute)

NoticeType = Literal[
    "stop_payment", "bulk_stop_payment", "direct_deposit_change", "direct_deposit_reversal"
]


class AssignedContact(BaseModel):
    contact: str = Field(description="The contact's external_id.")
    name: str
    email: str | None
    customer: str = Field(description="The debtor the contact belongs to.")


class BankingNotice(BaseModel):
    type: str
    contacts: list[AssignedContact]
    to_primary_contacts: bool = Field(
        description="Nobody is assigned: the notices go to the debtor's primary contacts."
    )


class BankingChange(BankingNotice):
    changed: int = Field(description="Contacts added (assign) or removed (unassign).")


class AssignIn(Strict):
    type: NoticeType
    contacts: list[ExternalId] = Field(
        min_length=1, max_length=100, description="The contacts' external_ids."
    )


def _notices(conn: Connection, company_id: int) -> list[BankingNotice]:
    found = assignments(conn, company_id)
    notices = []
    for kind in BANKING_TYPES:
        held = [
            AssignedContact(contact=a.contact, name=a.name, email=a.email, customer=a.customer)
            for a in found
            if a.notice_type == kind
        ]
        notices.append(BankingNotice(type=kind, contacts=held, to_primary_contacts=not held))
    return notices


def _notice(who: Caller, notice_type: str) -> BankingNotice:
    with who.state.reader.connect() as conn:
        return next(n for n in _notices(conn, who.company_id) if n.type == notice_type)


@router.get("", response_model=list[BankingNotice], summary="Every banking notice's contacts")
def list_notices(who: Reader, type: NoticeType | None = None) -> list[BankingNotice]:
    with who.state.reader.connect() as conn:
        notices = _notices(conn, who.company_id)
    return [n for n in notices if type is None or n.type == type]


@router.post(
    "",
    response_model=BankingChange,
    summary="Assign contacts to a banking notice",
    description="All or none: a contact without the `banking` role, or unknown, refuses "
    "the request and nobody is assigned. Assigning a contact again changes nothing.",
)
async def assign_contacts(who: Admin, body: AssignIn) -> BankingChange:
    def work() -> BankingChange:
        try:
            with who.state.ws.engine.begin() as conn:
                added = assign(conn, who.company_id, body.type, body.contacts, who.state.now())
        except AssignmentRefused as exc:
            raise Problem(
                422,
                "assignment-refused",
                f"{exc}; nobody was assigned",
                [FieldError(field="body.contacts", problem=str(exc))],
            ) from None
        return BankingChange(**_notice(who, body.type).model_dump(), changed=added)

    return await run_in_threadpool(work)


@router.delete(
    "/{notice_type}/contacts/{external_id}",
    response_model=BankingChange,
    summary="Remove a contact from a banking notice",
    description="When the last contact is removed, the notices go to the primary contacts "
    "(`to_primary_contacts`). Removing a contact that is not assigned changes nothing.",
)
def unassign_contact(who: Admin, notice_type: NoticeType, external_id: str) -> BankingChange:
    try:
        with who.state.ws.engine.begin() as conn:
            removed = unassign(conn, who.company_id, notice_type, [external_id])
    except AssignmentRefused:
        raise not_found("contact with this external_id") from None
    return BankingChange(**_notice(who, notice_type).model_dump(), changed=removed)
