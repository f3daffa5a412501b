"""``/disputes``: items a debtor disputes, left out of every claim until staff resolve the
dispute; one taken by phone or mail recorded, one resolved (what `cobro disputes` does)."""

from __future__ import annotations

import base64
import binascii
import mimetypes
from typing import Literal

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, Field
from starlette.responses import JSONResponse

from cobro.engine.response_lists import Dispute as DisputeRecord
from cobro.engine.response_lists import debtor_id, item_id
from cobro.engine.response_lists import list_disputes as read_disputes
from cobro.engine.responses import Attachment, ResponseError
from cobro.engine.responses import open_dispute as record_dispute
from cobro.engine.responses import resolve_dispute as record_resolution
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.common import (
    NO_NUL,
    CustomerFilter,
    Id,
    after_id,
    conflict,
    id_page,
    money,
    refused,
)
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import Money, Strict
from cobro.web.api.pagination import Cursor, Limit, Page
from cobro.web.api.problems import not_found

router = APIRouter(prefix="/disputes", tags=["disputes"], route_class=IdempotentRoute)

PREFIX = "/api/v1"
DisputeStatus = Literal["open", "accepted", "rejected"]


class Dispute(BaseModel):
    id: int
    customer: str = Field(description="The debtor's external_id.")
    customer_name: str
    item: str = Field(description="The item's number.")
    item_external_id: str
    balance: Money = Field(description="The item's balance now.")
    reason: str
    source: Literal["portal", "staff"] = Field(
        description="portal: the debtor, from a claim's link; staff: taken by phone or mail."
    )
    status: DisputeStatus = Field(
        description="open (the item is left out of every claim), accepted (it stays out: "
        "issue a credit note), rejected (it is claimed again)."
    )
    opened_at: AwareDatetime
    claim: int | None = Field(description="The claim whose link it came from.")
    attachment: str | None = Field(description="The name of the file sent with it.")
    resolved_at: AwareDatetime | None
    resolution: str | None


class AttachmentIn(Strict):
    filename: str = Field(
        min_length=1, max_length=200, pattern=NO_NUL, examples=["delivery-note.pdf"]
    )
    content_type: str | None = Field(
        default=None,
        max_length=100,
        pattern=NO_NUL,
        description="Its media type (default: guessed from the file name).",
        examples=["application/pdf"],
    )
    content_base64: str = Field(min_length=1, description="The file, base64-encoded.")


class DisputeIn(Strict):
    """A dispute taken by phone or mail (source `staff`), as `cobro disputes open` records it."""

    customer: str = Field(
        min_length=1, max_length=100, pattern=NO_NUL, description="The debtor's external_id."
    )
    item: str = Field(
        min_length=1,
        max_length=100,
        pattern=NO_NUL,
        description="The item's number or external_id.",
    )
    reason: str = Field(
        min_length=1, max_length=2000, pattern=NO_NUL, description="Why the debtor disputes it."
    )
    attachment: AttachmentIn | None = Field(
        default=None,
        description="A file the debtor sent (at most portal.dispute_attachment_max_kb).",
    )


class ResolutionIn(Strict):
    decision: Literal["accept", "reject"] = Field(
        description="accept: the debtor is right, the item stays out of every claim (issue "
        "a credit note); reject: the item is owed and claimed again from the next run."
    )
    note: str | None = Field(
        default=None, max_length=2000, pattern=NO_NUL, description="What was decided, and why."
    )


def dispute_out(x: DisputeRecord) -> Dispute:
    return Dispute(
        id=x.id,
        customer=x.customer,
        customer_name=x.customer_name,
        item=x.item,
        item_external_id=x.item_external_id,
        balance=money(x.balance),
        reason=x.reason,
        source=x.source,  # type: ignore[arg-type]
        status=x.status,  # type: ignore[arg-type]
        opened_at=x.opened_at,
        claim=x.claim,
        attachment=x.attachment,
        resolved_at=x.resolved_at,
        resolution=x.resolution,
    )


def find_dispute(who: Caller, dispute_id: int) -> Dispute:
    with who.state.reader.connect() as conn:
        found = read_disputes(conn, who.company_id, dispute_id=dispute_id)
    if not found:
        raise not_found("dispute with this id")
    return dispute_out(found[0])


@router.get("", response_model=Page[Dispute], summary="List disputes")
def list_disputes(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: DisputeStatus | None = None,
    customer: CustomerFilter = None,
) -> Page[Dispute]:
    with who.state.reader.connect() as conn:
        found = read_disputes(
            conn,
            who.company_id,
            status=status,
            customer=customer,
            after=after_id(cursor),
            limit=limit + 1,
        )
    return id_page([dispute_out(x) for x in found], limit, lambda x: x.id)


@router.get("/{dispute_id}", response_model=Dispute, summary="One dispute")
def get_dispute(who: Reader, dispute_id: Id) -> Dispute:
    return find_dispute(who, dispute_id)


def _attachment(who: Caller, given: AttachmentIn) -> Attachment:
    limit_kb = who.state.ws.config.portal.dispute_attachment_max_kb
    try:
        data = base64.b64decode(given.content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise refused("body.attachment.content_base64", "not base64") from None
    if len(data) > limit_kb * 1024:
        raise refused(
            "body.attachment.content_base64",
            f"{len(data) // 1024} KB is over the {limit_kb} KB limit "
            "(portal.dispute_attachment_max_kb)",
        )
    kind = given.content_type or mimetypes.guess_type(given.filename)[0]
    return Attachment(given.filename, kind or "application/octet-stream", data)


@router.post(
    "",
    response_model=Dispute,
    status_code=201,
    summary="Record a dispute taken by phone or mail",
)
def open_dispute(who: Collector, body: DisputeIn) -> JSONResponse:
    """The item is left out of every claim until the dispute is resolved, and a staff
    task is opened (`GET /tasks`). An item already disputed, or not open, is refused (409)."""
    if not body.reason.strip():
        raise refused("body.reason", "a dispute needs a reason")
    attachment = _attachment(who, body.attachment) if body.attachment else None
    with who.state.ws.engine.begin() as conn:
        try:
            cid = debtor_id(conn, who.company_id, body.customer)
        except ResponseError:
            raise refused("body.customer", "no debtor with this external_id") from None
        try:
            rid = item_id(conn, who.company_id, cid, body.item)
        except ResponseError as exc:
            raise refused("body.item", str(exc)) from None
        try:
            found = record_dispute(
                conn,
                who.company_id,
                cid,
                rid,
                body.reason,
                who.state.now(),
                source="staff",
                attachment=attachment,
            )
        except ResponseError as exc:
            raise conflict(str(exc)) from None
    return JSONResponse(
        find_dispute(who, found).model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"{PREFIX}/disputes/{found}"},
    )


@router.post("/{dispute_id}/resolve", response_model=Dispute, summary="Accept or reject")
def resolve_dispute(who: Collector, dispute_id: Id, body: ResolutionIn) -> Dispute:
    """Rejected: the item is claimed again from the next run. Accepted: it stays out of
    every claim (issue a credit note to close it). A dispute already resolved: 409."""
    find_dispute(who, dispute_id)
    with who.state.ws.engine.begin() as conn:
        try:
            record_resolution(
                conn,
                who.company_id,
                dispute_id,
                body.decision == "accept",
                body.note,
                who.state.now(),
            )
        except ResponseError as exc:
            raise conflict(str(exc)) from None
    return find_dispute(who, dispute_id)
