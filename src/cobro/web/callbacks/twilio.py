"""Twilio's reports at ``/callbacks/{company}/twilio/...``: each SMS's status, and the SMS
debtors send back (STOP, BAJA, ALTO...).

Every request must carry the ``X-Twilio-Signature`` Twilio computes with the company's auth
token over the URL it called and the form it posted (``RequestValidator``); one without it,
or with a wrong one, is refused with 403 and changes nothing. The URL checked is the one
Cobro gave Twilio (``company.public_url``, or ``channels.sms.status_callback``), so that a
proxy in front of the server does not change what was signed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastapi import APIRouter, Request
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import PlainTextResponse, Response
from twilio.request_validator import RequestValidator

from cobro.channels.sms import RECIPIENT_CODES
from cobro.domain.delivery import DeliveryState
from cobro.engine.deliveries import Followup, followup_of, record_state
from cobro.engine.optouts import add_optout, customers_with_phone, is_stop
from cobro.store import tables as t
from cobro.web.deps import WebState, site_of

router = APIRouter(prefix="/callbacks/{company}/twilio", include_in_schema=False)

MAX_FORM = 64 * 1024  # a status callback is well under 2 KiB
# Twilio error codes of an undelivered message that will not be delivered later either.
FOR_GOOD = frozenset(RECIPIENT_CODES) | {30007, 30034}


def twilio_state(status: str, error_code: str | None) -> DeliveryState | None:
    """The delivery state a Twilio ``MessageStatus`` means (None: nothing to record)."""
    code = int(error_code) if error_code and error_code.isdigit() else None
    if status in ("sent",):
        return DeliveryState.SENT
    if status in ("delivered", "read"):
        return DeliveryState.DELIVERED
    if status == "undelivered":
        if code is None or code in FOR_GOOD:
            return DeliveryState.PERMANENT_FAILURE
        return DeliveryState.TEMPORARY_FAILURE
    if status in ("failed", "canceled"):
        if code is not None and code in FOR_GOOD:
            return DeliveryState.PERMANENT_FAILURE
        return DeliveryState.TECHNICAL_FAILURE
    return None  # queued, accepted, scheduled, sending: nothing new


def followup(state: WebState) -> Followup:
    cfg = state.ws.config
    return followup_of(cfg)


@dataclass(frozen=True)
class _Signed:
    state: WebState
    form: FormData


async def _signed(request: Request, company: str, path: str) -> _Signed | Response:
    """The company and the form of a request Twilio signed, or the 403/404 answer."""
    state = site_of(request).company(company)
    if state is None:
        return PlainTextResponse("Not found\n", status_code=404)
    sms = state.ws.config.channels.sms
    token = os.environ.get(sms.auth_token_env) if sms is not None else None
    signature = request.headers.get("x-twilio-signature")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_FORM:
        return PlainTextResponse("Too large\n", status_code=413)
    form = await request.form()
    if not token or not signature:
        return PlainTextResponse("Forbidden\n", status_code=403)
    validator = RequestValidator(token)
    query = request.url.query
    base = state.ws.config.company.server_url
    if path == "status" and sms is not None and sms.status_callback:
        configured = sms.status_callback.split("?")[0]
    else:
        configured = f"{base}/callbacks/{company}/twilio/{path}"
    urls = [configured + (f"?{query}" if query else ""), str(request.url)]
    if not any(validator.validate(url, form, signature) for url in urls):
        return PlainTextResponse("Forbidden\n", status_code=403)
    return _Signed(state, form)


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value else None


@router.post("/status")
async def status(request: Request, company: str) -> Response:
    """A message's status: recorded on its delivery (found by the reference in the URL,
    else by its Twilio id); a late or repeated one changes nothing."""
    signed = await _signed(request, company, "status")
    if isinstance(signed, Response):
        return signed
    state, form = signed.state, signed.form
    sid = _field(form, "MessageSid") or _field(form, "SmsSid")
    status_ = (_field(form, "MessageStatus") or _field(form, "SmsStatus") or "").lower()
    code = _field(form, "ErrorCode")
    new = twilio_state(status_, code)
    ref = request.query_params.get("ref")
    if new is None or (sid is None and ref is None):
        return Response(status_code=204)
    detail = status_ + (f" (error {code}" if code else "")
    if code:
        known = RECIPIENT_CODES.get(int(code)) if code.isdigit() else None
        detail += f": {known})" if known else ")"

    def work() -> None:
        ws = state.ws
        with ws.engine.begin() as conn:
            delivery = _delivery(conn, ws.company_id, ref, sid)
            if delivery is None:
                return
            record_state(
                conn,
                ws.company_id,
                delivery,
                new,
                source="twilio",
                detail=detail,
                at=state.now(),
                settings=followup(state),
                provider_id=f"twilio:{sid}" if sid else None,
            )

    await run_in_threadpool(work)
    return Response(status_code=204)


def _delivery(conn: Connection, company_id: int, ref: str | None, sid: str | None) -> int | None:
    d = t.deliveries.c
    if ref:
        found = conn.execute(
            select(d.id).where(d.company_id == company_id, d.ref == ref[:40], d.channel == "sms")
        ).scalar()
        if found is not None:
            return int(found)
    if sid:
        found = conn.execute(
            select(d.id)
            .where(d.company_id == company_id, d.provider_id == f"twilio:{sid}"[:300])
            .order_by(d.id.desc())
            .limit(1)
        ).scalar()
        if found is not None:
            return int(found)
    return None


EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@router.post("/inbound")
async def inbound(request: Request, company: str) -> Response:
    """An SMS a debtor sent: STOP, BAJA, ALTO (and Twilio's other stop words) opt every
    debtor of that number out of SMS. Answered with empty TwiML: Cobro replies nothing."""
    signed = await _signed(request, company, "inbound")
    if isinstance(signed, Response):
        return signed
    state, form = signed.state, signed.form
    sender, body = _field(form, "From"), _field(form, "Body") or ""
    if sender and is_stop(body):

        def work() -> None:
            ws = state.ws
            with ws.engine.begin() as conn:
                for customer in customers_with_phone(conn, ws.company_id, sender):
                    add_optout(
                        conn,
                        ws.company_id,
                        customer,
                        "sms",
                        "sms_reply",
                        state.now(),
                        f"{body.strip()[:40]!r} from {sender}",
                    )

        await run_in_threadpool(work)
    return Response(EMPTY_TWIML, media_type="text/xml")
