"""Twilio's reports at ``/callbacks/{company}/twilio/...``: each SMS's status, the SMS
debtors send back (STOP, BAJA, ALTO...), and for calls: the TwiML a call plays
(``twiml``), the key the callee pressed (``gather``) and each call's outcome (``call``).

Every request must carry the ``X-Twilio-Signature`` Twilio computes with the company's auth
token over the URL it called and the form it posted (``RequestValidator``); one without it,
or with a wrong one, is refused with 403 and changes nothing. The URL checked is the one
Cobro gave Twilio (``company.public_url``, or ``channels.sms.status_callback`` /
``channels.voice.status_callback``), so that a proxy in front of the server does not change
what was signed. Call requests are checked with ``channels.voice``'s auth token.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import PlainTextResponse, Response
from twilio.request_validator import RequestValidator

from cobro.channels.sms import RECIPIENT_CODES
from cobro.channels.voice import (
    CALL_RECIPIENT_CODES,
    PRESS_KEY,
    answer_twiml,
    hangup_twiml,
)
from cobro.domain.delivery import DeliveryState
from cobro.engine.deliveries import Followup, followup_of, record_state
from cobro.engine.optouts import add_optout, customers_with_phone, is_stop
from cobro.engine.paylinks import plan_pay_link
from cobro.evidence.messages import unpack
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
    voice = state.ws.config.channels.voice
    token = os.environ.get(sms.auth_token_env) if sms is not None else None
    if path in CALL_PATHS:
        token = os.environ.get(voice.auth_token_env) if voice is not None else None
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
    elif path == "call" and voice is not None and voice.status_callback:
        configured = voice.status_callback.split("?")[0]
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

    return await _record(state, ref, sid, new, detail, "sms")


async def _record(
    state: WebState,
    ref: str | None,
    sid: str | None,
    new: DeliveryState,
    detail: str,
    channel: str,
) -> Response:
    """The state a status callback reports, on its delivery (none: nothing changes)."""

    def work() -> None:
        ws = state.ws
        with ws.engine.begin() as conn:
            delivery = _delivery(conn, ws.company_id, ref, sid, channel)
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


def _delivery(
    conn: Connection, company_id: int, ref: str | None, sid: str | None, channel: str = "sms"
) -> int | None:
    d = t.deliveries.c
    if ref:
        found = conn.execute(
            select(d.id).where(d.company_id == company_id, d.ref == ref[:40], d.channel == channel)
        ).scalar()
        if found is not None:
            return int(found)
    if sid:
        found = conn.execute(
            select(d.id)
            .where(
                d.company_id == company_id,
                d.provider_id == f"twilio:{sid}"[:300],
                d.channel == channel,
            )
            .order_by(d.id.desc())
            .limit(1)
        ).scalar()
        if found is not None:
            return int(found)
    return None


CALL_PATHS = frozenset({"call", "twiml", "gather"})
MACHINE_DONE = frozenset({"machine_end_beep", "machine_end_silence", "machine_end_other"})


def call_state(
    status: str, answered_by: str | None, error_code: str | None, voicemail: bool
) -> tuple[DeliveryState | None, str]:
    """The delivery state a Twilio ``CallStatus`` (with ``AnsweredBy`` from answering-
    machine detection) means, and the outcome in words (None: nothing to record)."""
    code = int(error_code) if error_code and error_code.isdigit() else None
    by = (answered_by or "").lower()
    if status == "completed":
        if by.startswith("machine"):
            if voicemail and by in MACHINE_DONE:
                return DeliveryState.DELIVERED, f"answered by a machine ({by}): message left"
            return DeliveryState.TEMPORARY_FAILURE, f"answered by a machine ({by})"
        if by == "fax":
            return DeliveryState.PERMANENT_FAILURE, "answered by a fax"
        return DeliveryState.DELIVERED, "answered by a person" if by == "human" else "answered"
    if status == "busy":
        return DeliveryState.TEMPORARY_FAILURE, "busy"
    if status == "no-answer":
        return DeliveryState.TEMPORARY_FAILURE, "no answer"
    if status == "failed":
        if code is not None and code in CALL_RECIPIENT_CODES:
            return (
                DeliveryState.PERMANENT_FAILURE,
                f"failed (error {code}: {CALL_RECIPIENT_CODES[code]})",
            )
        return DeliveryState.TECHNICAL_FAILURE, "failed" + (f" (error {code})" if code else "")
    if status == "canceled":
        return DeliveryState.TECHNICAL_FAILURE, "canceled"
    return None, status  # queued, initiated, ringing, in-progress: nothing new


@router.post("/call")
async def call_status(request: Request, company: str) -> Response:
    """A call's progress and outcome: recorded on its delivery (found by the reference in
    the URL, else by its Twilio id); a late or repeated report changes nothing."""
    signed = await _signed(request, company, "call")
    if isinstance(signed, Response):
        return signed
    state, form = signed.state, signed.form
    sid = _field(form, "CallSid")
    voice = state.ws.config.channels.voice
    new, detail = call_state(
        (_field(form, "CallStatus") or "").lower(),
        _field(form, "AnsweredBy"),
        _field(form, "ErrorCode"),
        voice is not None and voice.voicemail,
    )
    ref = request.query_params.get("ref")
    if new is None or (sid is None and ref is None):
        return Response(status_code=204)
    seconds = _field(form, "CallDuration")
    if seconds and seconds.isdigit() and new is DeliveryState.DELIVERED:
        detail += f", {seconds} s"

    return await _record(state, ref, sid, new, detail, "voice")


def _speech(twiml: bytes) -> tuple[str, str, str | None]:
    """(message language, speech language, voice) a call's kept TwiML speaks in."""
    say = _SAY.search(twiml.decode("utf-8", "replace"))
    attributes = dict(_ATTRIBUTE.findall(say.group(1))) if say else {}
    speech = attributes.get("language", "en-US")
    return speech.partition("-")[0], speech, attributes.get("voice")


_SAY = re.compile(r"<Say\b([^>]*)>")
_ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')


def _kept_call(conn: Connection, company_id: int, ref: str | None) -> tuple[Any, bytes] | None:
    """The voice delivery of ``ref`` and the TwiML kept for it."""
    if not ref:
        return None
    d, o = t.deliveries.c, t.outbox.c
    row = conn.execute(
        select(d.id, d.outbox_id, d.recipient, d.message_zlib, o.customer_id)
        .join(t.outbox, o.id == d.outbox_id)
        .where(d.company_id == company_id, d.ref == ref[:40], d.channel == "voice")
    ).first()
    if row is None or row.message_zlib is None:
        return None
    return row, unpack(row.message_zlib)


def _twiml(body: str) -> Response:
    return Response(body, media_type="text/xml")


@router.post("/twiml")
async def call_twiml(request: Request, company: str) -> Response:
    """What an answered call plays: the message kept for its delivery; a hang-up when a
    machine answered and ``channels.voice.voicemail`` is off, or for an unknown call."""
    signed = await _signed(request, company, "twiml")
    if isinstance(signed, Response):
        return signed
    state, form = signed.state, signed.form
    ref = request.query_params.get("ref")
    by = (_field(form, "AnsweredBy") or "").lower()
    voice = state.ws.config.channels.voice

    def work() -> bytes | None:
        with state.ws.engine.connect() as conn:
            found = _kept_call(conn, state.ws.company_id, ref)
        return found[1] if found else None

    kept = await run_in_threadpool(work)
    if kept is None:
        return _twiml(hangup_twiml())
    machine = by.startswith("machine") or by == "fax"
    if machine and (voice is None or not voice.voicemail or by not in MACHINE_DONE):
        return _twiml(hangup_twiml())
    return _twiml(kept.decode("utf-8"))


@router.post("/gather")
async def call_gather(request: Request, company: str) -> Response:
    """The key the callee pressed: 1 plans an SMS with the claim's pay link to the number
    called (sent by the next dispatch) and marks the call reached a person."""
    signed = await _signed(request, company, "gather")
    if isinstance(signed, Response):
        return signed
    state, form = signed.state, signed.form
    ref = request.query_params.get("ref")
    digits = (_field(form, "Digits") or "").strip()

    def work() -> tuple[bool, bytes] | None:
        ws = state.ws
        now = state.now()
        with ws.engine.begin() as conn:
            found = _kept_call(conn, ws.company_id, ref)
            if found is None:
                return None
            row, kept = found
            if digits != PRESS_KEY:
                return False, kept
            record_state(
                conn,
                ws.company_id,
                int(row.id),
                DeliveryState.DELIVERED,
                source="twilio",
                detail=f"answered by a person: pressed {PRESS_KEY} for the pay link by SMS",
                at=now,
                settings=followup(state),
            )
            planned = plan_pay_link(
                conn,
                ws.config,
                ws.company_id,
                claim=int(row.outbox_id),
                call=int(row.id),
                customer_id=int(row.customer_id),
                to=str(row.recipient),
                at=now,
            )
            return planned, kept

    done = await run_in_threadpool(work)
    if done is None:
        return _twiml(hangup_twiml())
    sent, kept = done
    language, speech, voice = _speech(kept)
    return _twiml(answer_twiml(language, speech, voice, sent=sent))


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
