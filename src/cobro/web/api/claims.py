"""``/claims``: every message the company sent or will send a debtor (an outbox row: a
policy phase, a scheduled action, an event notice, a resend), with its items, deliveries
and what followed it; ``/customers/{external_id}/claims``; a claim's message resent."""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Connection, Date, Row, Select, bindparam, exists, func, select
from starlette.responses import JSONResponse, Response

from cobro.config import CobroConfig
from cobro.engine.messages import ACTION_PREFIX, RESEND_PREFIX, notice_spec
from cobro.evidence.history import ClaimedItem, claim_history, step_name
from cobro.evidence.messages import MEDIA_TYPES, message_as_sent
from cobro.store import tables as t
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.common import (
    CustomerFilter,
    Day,
    Id,
    after_id,
    conflict,
    customer_id,
    id_page,
    money,
    refused,
)
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import Money, Strict
from cobro.web.api.pagination import Cursor, Limit, Page
from cobro.web.api.problems import not_found
from cobro.web.api.reading import answer, read

router = APIRouter(tags=["claims"], route_class=IdempotentRoute)

PREFIX = "/api/v1"
# Outbox rows that carry no message to a person (webhook deliveries) are not claims.
NOT_CLAIMS = "webhook/%"

ClaimStatus = Literal["planned", "sending", "sent", "failed", "cancelled"]
ClaimKind = Literal["phase", "action", "notice", "resend"]
ChannelName = Literal["email", "sms", "push", "voice"]


class ClaimSummary(BaseModel):
    id: int = Field(description="The claim's id (`cobro history` shows it as its outbox id).")
    customer: str = Field(description="The debtor's external_id.")
    date: dt.date = Field(description="The day the claim is for (planned on).")
    step: str = Field(description="`policy/phase`, `action/KEY`, a notice or `resend/...`.")
    name: str = Field(description="The phase's name, the action's description...")
    kind: ClaimKind
    status: ClaimStatus = Field(
        description="planned (waiting, or retried after a temporary failure: see attempts), "
        "sending, sent, failed (for good), cancelled (paid before it was sent)."
    )
    reason: str | None = Field(description="Why it failed or was cancelled.")
    attempts: int
    sent_at: AwareDatetime | None = Field(
        description="When its first message was accepted by a provider."
    )
    next_attempt_at: AwareDatetime | None = Field(
        description="While planned: when it is sent (or tried again)."
    )
    finished_at: AwareDatetime | None
    resend_of: int | None = Field(description="A resend: the claim whose message it repeats.")


class ClaimItem(BaseModel):
    number: str
    external_id: str
    kind: str = Field(description="invoice, credit_note, ...")
    due_on: dt.date
    amount: Money
    balance_at_send: Money | None = Field(description="The balance the claim showed.")
    balance_now: Money


class Delivery(BaseModel):
    id: int
    attempt: int = Field(description="The claim's attempt it belongs to (1, 2...).")
    at: AwareDatetime
    channel: str
    recipient: str
    role: str = Field(description="debtor, contact, sales_rep, account_manager, admin.")
    status: str = Field(description="What the channel answered: sent (accepted) or failed.")
    state: str = Field(
        description="Where it stands now: sending, sent, delivered, temporary_failure, "
        "permanent_failure (a bounce...), technical_failure."
    )
    state_at: AwareDatetime | None = Field(description="Since when it is in that state.")
    message_id: str | None
    error: str | None
    cost: Money
    resend_of: int | None = Field(description="A resend: the delivery whose message it repeats.")
    message_sha256: str | None
    message_url: str | None = Field(description="The message exactly as sent, when it was kept.")


class View(BaseModel):
    at: AwareDatetime
    ip: str | None
    user_agent: str | None


class ClaimEvent(BaseModel):
    at: AwareDatetime
    kind: str = Field(
        description="delivery, opened, read, dispute, dispute.accepted, dispute.rejected, "
        "promise, promise.kept, promise.broken, payment."
    )
    text: str
    data: dict[str, Any]


class Claim(ClaimSummary):
    customer_name: str
    items: list[ClaimItem]
    deliveries: list[Delivery]
    opens: list[View] = Field(
        description="The link in the message opened (a page view: weak evidence, mail "
        "scanners open links too)."
    )
    reads: list[View] = Field(description="Reading confirmed by the debtor on the page.")
    events: list[ClaimEvent] = Field(
        description="Deliveries, opens, reads, disputes, promises and payments, in time order."
    )


class ResendIn(Strict):
    to: str | None = Field(
        default=None,
        max_length=320,
        description="Only to this email address or phone number, as the debtor's message "
        "of that channel; by default to every recipient the claim reached.",
        examples=["ap@example.com"],
    )


class ResentDelivery(BaseModel):
    id: int
    channel: str
    recipient: str
    status: str
    message_id: str | None
    error: str | None
    resend_of: int | None


class Resend(BaseModel):
    claim: int = Field(description="The claim resent.")
    resend: int = Field(description="The resend's own claim id (`GET /claims/{resend}`).")
    status: ClaimStatus
    reason: str | None
    deliveries: list[ResentDelivery]
    link_expired_at: AwareDatetime | None = Field(
        description="The message is resent as it was sent: a pay link in it that has "
        "expired since (company.link_max_age_days), when."
    )


def claim_kind(config: CobroConfig, step: str) -> ClaimKind:
    if step.startswith(RESEND_PREFIX):
        return "resend"
    if step.startswith(ACTION_PREFIX):
        return "action"
    if notice_spec(config, step) is not None:
        return "notice"
    return "phase"


def resend_of(step: str) -> int | None:
    if not step.startswith(RESEND_PREFIX):
        return None
    claim = step.removeprefix(RESEND_PREFIX).partition("/")[0]
    return int(claim) if claim.isdigit() else None


class Filters(NamedTuple):
    """Which filters a page of claims has (the shape of its statement, built once)."""

    customer: bool = False
    status: bool = False
    step: bool = False
    date_from: bool = False
    date_to: bool = False
    channel: bool = False
    claim: bool = False


@lru_cache(maxsize=256)
def _statement(shape: Filters) -> Select[Any]:
    """The claims of a company (``:company``) matching the filters of ``shape`` (as bound
    parameters of the same names), after ``:after``, by id, at most ``:limit``: their
    debtor's external id and when their first message was accepted, in one query.

    The company's claims are walked in the order of their ids (``ix_outbox_company_id_id``,
    by status ``ix_outbox_company_id_status_id``). A debtor's are found by the outbox key
    (company, debtor, ...) and sorted: the order and the other columns are then written so
    that no index of all the company's claims looks cheaper to SQLite, which keeps no
    statistics and would otherwise walk every claim of the company to find the debtor's."""
    o, c, d = t.outbox.c, t.customers.c, t.deliveries.c
    sent_at = (
        select(func.min(d.at))
        .where(d.outbox_id == o.id, d.status != "failed")
        .scalar_subquery()
        .label("sent_at")
    )
    where: list[Any] = [o.company_id == bindparam("company"), o.step.not_like(NOT_CLAIMS)]
    key: Any = o.id
    status: Any = o.status
    step: Any = o.step
    if shape.customer:
        where.append(o.customer_id == bindparam("customer"))
        key, status, step = o.id + 0, o.status.concat(""), o.step.concat("")
    where.append(key > bindparam("after"))
    if shape.claim:
        where.append(o.id == bindparam("claim"))
    if shape.status:
        where.append(status == bindparam("status"))
    if shape.step:
        where.append(step == bindparam("step"))
    if shape.date_from:
        where.append(o.occurrence_on >= bindparam("date_from", type_=Date))
    if shape.date_to:
        where.append(o.occurrence_on <= bindparam("date_to", type_=Date))
    if shape.channel:
        where.append(exists().where(d.outbox_id == o.id, d.channel == bindparam("channel")))
    return (
        select(o.id, o.step, o.occurrence_on, o.status, o.reason, o.attempts)
        .add_columns(o.next_attempt_at, o.finished_at, c.external_id, c.name, sent_at)
        .join(t.customers, c.id == o.customer_id)
        .where(*where)
        .order_by(key)
        .limit(bindparam("limit"))
    )


def _summaries(
    conn: Connection, who: Caller, limit: int, after: int | None = None, **given: Any
) -> list[Row[Any]]:
    """Up to ``limit`` claims of the caller's company matching ``given`` (the filters of
    ``Filters``, those that are not None), after the claim ``after``, by id."""
    given = {k: v for k, v in given.items() if v is not None}
    shape = Filters(**dict.fromkeys(given, True))
    params = {**given, "company": who.company_id, "after": after or 0, "limit": limit}
    return list(conn.execute(_statement(shape), params))


def summary_out(
    config: CobroConfig, r: Row[Any], steps: dict[str, tuple[str, ClaimKind]] | None = None
) -> ClaimSummary:
    """A claim's summary; ``steps`` keeps each step's name and kind once found (a page's
    claims share a few steps)."""
    described = steps.get(r.step) if steps is not None else None
    if described is None:
        described = (step_name(config, r.step), claim_kind(config, r.step))
        if steps is not None:
            steps[r.step] = described
    return ClaimSummary(
        id=r.id,
        customer=r.external_id,
        date=r.occurrence_on,
        step=r.step,
        name=described[0],
        kind=described[1],
        status=r.status,
        reason=r.reason,
        attempts=r.attempts,
        sent_at=r.sent_at,
        next_attempt_at=r.next_attempt_at if r.status == "planned" else None,
        finished_at=r.finished_at,
        resend_of=resend_of(r.step),
    )


def _page(
    conn: Connection, who: Caller, limit: int, cursor: str | None, **given: Any
) -> Page[ClaimSummary]:
    """A page of the company's claims matching ``given``, after the cursor's claim."""
    rows = _summaries(conn, who, limit + 1, after_id(cursor), **given)
    config = who.state.ws.config
    steps: dict[str, tuple[str, ClaimKind]] = {}
    return id_page([summary_out(config, r, steps) for r in rows], limit, lambda x: x.id)


DateFrom = Annotated[Day | None, Query(alias="from", description="Claims for this day or later.")]
DateTo = Annotated[Day | None, Query(alias="to", description="Claims for this day or earlier.")]
ExternalId = Annotated[str, Path(max_length=100)]


@router.get("/claims", response_model=Page[ClaimSummary], summary="List claims")
async def list_claims(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    customer: CustomerFilter = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    step: Annotated[
        str | None,
        Query(max_length=90, description="`policy/phase` (e.g. `b2b/01`) or step."),
    ] = None,
    channel: Annotated[
        ChannelName | None, Query(description="Claims with a delivery on this channel.")
    ] = None,
    status: ClaimStatus | None = None,
) -> Response:
    def work(conn: Connection) -> Page[ClaimSummary]:
        found = None
        if customer is not None:
            found = customer_id(conn, who, customer)
            if found is None:
                return Page[ClaimSummary](data=[])
        return _page(
            conn,
            who,
            limit,
            cursor,
            customer=found,
            status=status,
            step=step,
            date_from=date_from,
            date_to=date_to,
            channel=channel,
        )

    # One debtor's claims are read by the outbox key; without a debtor, filters may walk
    # many of the company's claims before a page is full.
    return answer(await read(who.state, work, short=customer is not None))


@router.get(
    "/customers/{external_id}/claims",
    response_model=Page[ClaimSummary],
    summary="A debtor's claims",
)
async def list_customer_claims(
    who: Reader, external_id: ExternalId, limit: Limit = 50, cursor: Cursor = None
) -> Response:
    def work(conn: Connection) -> Page[ClaimSummary]:
        found = customer_id(conn, who, external_id)
        if found is None:
            raise not_found("customer with this external_id")
        return _page(conn, who, limit, cursor, customer=found)

    return answer(await read(who.state, work))


def _item(i: ClaimedItem) -> ClaimItem:
    return ClaimItem(
        number=i.number,
        external_id=i.external_id,
        kind=i.kind,
        due_on=i.due_on,
        amount=money(i.amount),
        balance_at_send=money(i.balance_at_send) if i.balance_at_send else None,
        balance_now=money(i.balance_now),
    )


def _view(x: Any) -> View:
    return View(at=x.at, ip=x.ip, user_agent=x.user_agent)


def find_claim(who: Caller, claim_id: int) -> Claim:
    """The caller's claim ``claim_id`` with everything about it, or 404."""
    config = who.state.ws.config
    currency = config.company.currency
    d, v = t.deliveries.c, t.claim_views.c
    with who.state.reader.connect() as conn:
        rows = _summaries(conn, who, 1, claim=claim_id)
        if not rows:
            raise not_found("claim with this id")
        found = claim_history(conn, config, who.company_id, outbox_id=claim_id)
        extra = {
            r.id: r
            for r in conn.execute(
                select(d.id, d.attempt, d.cost, d.state_at).where(
                    d.company_id == who.company_id, d.outbox_id == claim_id
                )
            )
        }
        views = list(
            conn.execute(
                select(v.kind, v.at, v.ip, v.user_agent)
                .where(v.company_id == who.company_id, v.outbox_id == claim_id)
                .order_by(v.at, v.id)
            )
        )
    row = rows[0]
    history = found[0]
    deliveries = [
        Delivery(
            id=x.id or 0,
            attempt=extra[x.id].attempt if x.id in extra else 0,
            at=x.at,
            channel=x.channel,
            recipient=x.recipient,
            role=x.role,
            status=x.status,
            state=x.state,
            state_at=extra[x.id].state_at if x.id in extra else None,
            message_id=x.message_id,
            error=x.error,
            cost=Money(amount=Decimal(extra[x.id].cost if x.id in extra else 0), currency=currency),
            resend_of=x.resend_of,
            message_sha256=x.message_sha256,
            message_url=(
                f"{PREFIX}/claims/{claim_id}/deliveries/{x.id}/message"
                if x.message_sha256
                else None
            ),
        )
        for x in history.deliveries
    ]
    return Claim(
        **summary_out(config, row).model_dump(),
        customer_name=row.name,
        items=[_item(i) for i in history.items],
        deliveries=deliveries,
        opens=[_view(x) for x in views if x.kind == "opened"],
        reads=[_view(x) for x in views if x.kind == "read"],
        events=[ClaimEvent(at=e.at, kind=e.kind, text=e.text, data=e.data) for e in history.events],
    )


@router.get("/claims/{claim_id}", response_model=Claim, summary="One claim")
def get_claim(who: Reader, claim_id: Id) -> Claim:
    return find_claim(who, claim_id)


@router.get(
    "/claims/{claim_id}/deliveries/{delivery_id}/message",
    summary="A delivery's message exactly as sent",
    response_class=Response,
    responses={
        200: {
            "description": "The bytes handed to the provider: an email (message/rfc822), "
            "an SMS text, a push notification's JSON.",
            "content": {media: {} for media in sorted(set(MEDIA_TYPES.values()))},
        }
    },
)
def get_delivery_message(who: Reader, claim_id: Id, delivery_id: Id) -> Response:
    with who.state.reader.connect() as conn:
        kept = message_as_sent(conn, who.company_id, delivery_id)
    if kept is None or kept.outbox_id != claim_id:
        raise not_found("message kept for this claim and delivery")
    headers = {}
    if kept.sha256:  # RFC 9530: the digest its evidence entry holds
        digest = base64.b64encode(bytes.fromhex(kept.sha256)).decode()
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
    return Response(
        kept.data,
        media_type=MEDIA_TYPES.get(kept.channel, "application/octet-stream"),
        headers=headers,
    )


@router.post(
    "/claims/{claim_id}/resend",
    response_model=Resend,
    status_code=201,
    summary="Send a claim's message again, exactly as it was sent",
)
def resend_claim(who: Collector, claim_id: Id, body: ResendIn | None = None) -> JSONResponse:
    """The message kept as sent goes again as a new delivery (a new claim of kind
    `resend`, sent at once like `cobro resend`): to every recipient the claim reached, or
    only to `to`. A claim never sent, or whose message was not kept, is refused (409)."""
    from cobro.engine.resend import ResendError, resend_outcome
    from cobro.engine.resend import resend_claim as plan_resend
    from cobro.engine.runs import dispatch_rows

    ws = who.state.ws
    now = who.state.now()
    to = body.to if body is not None else None
    o = t.outbox.c
    try:
        with ws.engine.begin() as conn:
            known = conn.execute(
                select(o.id).where(
                    o.id == claim_id, o.company_id == who.company_id, o.step.not_like(NOT_CLAIMS)
                )
            ).first()
            if known is None:
                raise not_found("claim with this id")
            row = plan_resend(conn, ws.config, who.company_id, claim_id, to=to, at=now)
    except ResendError as exc:
        text = str(exc)
        if text.startswith("--to: "):
            raise refused("body.to", text.removeprefix("--to: ")) from None
        raise conflict(text) from None
    dispatch_rows(ws, frozenset({row}), now, clock=who.state.clock)
    with who.state.reader.connect() as conn:
        outcome = resend_outcome(conn, ws.config, who.company_id, ws.secret, claim_id, row)
    answer = Resend(
        claim=claim_id,
        resend=row,
        status=outcome.status,  # type: ignore[arg-type]
        reason=outcome.reason,
        deliveries=[ResentDelivery(**x) for x in outcome.deliveries],
        link_expired_at=outcome.link_expired(ws.config, now),
    )
    return JSONResponse(
        answer.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"{PREFIX}/claims/{row}"},
    )
