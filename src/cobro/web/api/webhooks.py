"""``/webhooks``: the company's webhook endpoints and what was posted to them (admin keys
only: an endpoint's address and events are the company's settings), as ``cobro webhooks``
does. The signing secret is shown once, when the endpoint is created."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from cobro.engine import webhooks as hooks
from cobro.web.api.auth import Admin
from cobro.web.api.common import Id, conflict, refused
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import Strict
from cobro.web.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from cobro.web.api.problems import not_found

router = APIRouter(prefix="/webhooks", tags=["webhooks"], route_class=IdempotentRoute)

EventType = Annotated[str, Field(min_length=1, max_length=50, examples=["claim.sent"])]
Name = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]


class EndpointIn(Strict):
    url: str = Field(min_length=1, max_length=2000, examples=["https://erp.example.com/hooks"])
    name: str | None = Field(default=None, min_length=1, max_length=100)
    events: list[EventType] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Event types (docs/webhooks.md); none: every type (`*`).",
    )


class Endpoint(BaseModel):
    id: int
    name: str
    url: str
    events: list[str]
    enabled: bool
    created_at: AwareDatetime


class EndpointCreated(Endpoint):
    secret: str = Field(description="The signing secret (`whsec_...`), shown this once.")


class Removed(BaseModel):
    name: str
    cancelled: int = Field(description="Deliveries still waiting, cancelled.")


class Attempt(BaseModel):
    attempt: int
    at: AwareDatetime
    status_code: int | None
    error: str | None
    duration_ms: int


class Delivery(BaseModel):
    id: int
    endpoint: str
    event: str
    webhook_id: str
    customer: str
    status: str
    reason: str | None
    created_at: AwareDatetime
    next_attempt_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    attempts: list[Attempt]


def _endpoint(x: hooks.Endpoint) -> dict[str, Any]:
    return x.to_json()


def _problem(exc: hooks.WebhookError, field: str) -> Exception:
    return refused(field, str(exc))


@router.get("", response_model=list[Endpoint], summary="The company's webhook endpoints")
def list_webhooks(who: Admin) -> list[dict[str, Any]]:
    with who.state.reader.connect() as conn:
        return [_endpoint(x) for x in hooks.list_endpoints(conn, who.company_id)]


@router.post("", response_model=EndpointCreated, status_code=201, summary="Add a webhook endpoint")
async def add_webhook(who: Admin, body: EndpointIn) -> JSONResponse:
    def work() -> dict[str, Any]:
        try:
            with who.state.ws.engine.begin() as conn:
                made, secret = hooks.add_endpoint(
                    conn,
                    who.company_id,
                    body.url,
                    who.state.now(),
                    name=body.name,
                    events=list(body.events) if body.events else None,
                )
        except hooks.WebhookError as exc:
            raise _problem(exc, "body") from None
        return {**_endpoint(made), "secret": secret}

    return JSONResponse(await run_in_threadpool(work), status_code=201)


@router.get(
    "/deliveries", response_model=Page[Delivery], summary="Posts to the endpoints, newest first"
)
def list_webhook_deliveries(
    who: Admin,
    limit: Limit = 50,
    cursor: Cursor = None,
    endpoint: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    event: Annotated[str | None, Query(max_length=50)] = None,
    customer: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[Delivery]:
    before = decode_cursor(cursor, (int,))
    try:
        with who.state.reader.connect() as conn:
            found = hooks.list_deliveries(
                conn,
                who.company_id,
                endpoint=endpoint,
                status=status,
                event=event,
                customer=customer,
                before=int(before[0]) if before else None,
                limit=limit + 1,
            )
    except hooks.WebhookError as exc:
        raise _problem(exc, "query") from None
    shown = found[:limit]
    return Page[Delivery](
        data=[Delivery.model_validate(d.to_json()) for d in shown],
        next_cursor=encode_cursor([shown[-1].id]) if len(found) > limit and shown else None,
    )


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=Delivery,
    status_code=202,
    summary="Post a failed delivery again (the next dispatch sends it)",
    responses={409: {"description": "The delivery has not failed (it waits or was accepted)."}},
)
async def redeliver_webhook(who: Admin, delivery_id: Id) -> JSONResponse:
    def work() -> dict[str, Any]:
        try:
            with who.state.ws.engine.begin() as conn:
                mine = hooks.list_deliveries(conn, who.company_id, delivery=delivery_id, limit=1)
                if not mine:
                    raise not_found("webhook delivery with this id")
                hooks.redeliver(conn, who.company_id, delivery_id, who.state.now())
                (again,) = hooks.list_deliveries(
                    conn, who.company_id, delivery=delivery_id, limit=1
                )
        except hooks.WebhookError as exc:
            raise conflict(str(exc)) from None
        return again.to_json()

    return JSONResponse(await run_in_threadpool(work), status_code=202)


@router.get("/{name}", response_model=Endpoint, summary="One webhook endpoint")
def get_webhook(who: Admin, name: Name) -> dict[str, Any]:
    try:
        with who.state.reader.connect() as conn:
            return _endpoint(hooks.find_endpoint(conn, who.company_id, name))
    except hooks.WebhookError:
        raise not_found("webhook endpoint with this name") from None


@router.delete("/{name}", response_model=Removed, summary="Remove a webhook endpoint")
def remove_webhook(who: Admin, name: Name) -> Removed:
    try:
        with who.state.ws.engine.begin() as conn:
            cancelled = hooks.remove_endpoint(conn, who.company_id, name, who.state.now())
    except hooks.WebhookError:
        raise not_found("webhook endpoint with this name") from None
    return Removed(name=name, cancelled=cancelled)
