"""Automated calls through Twilio's Calls API: the message is spoken with text-to-speech.

A call is created with answering-machine detection and a status callback; when it is
answered, Twilio fetches its TwiML from ``cobro serve`` (``/callbacks/COMPANY/twilio/
twiml?ref=REF``), which answers with the message kept for the delivery (``<Say>`` in the
debtor's language and voice, and a ``<Gather>`` "press 1 to get the pay link by SMS"),
or with ``<Hangup/>`` when a machine answered and voicemail is off. The TwiML is built
here, before the call, and kept as the message as sent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from twilio.twiml.voice_response import Gather, VoiceResponse

from cobro.channels.base import Handovers, Outgoing
from cobro.channels.sms import TWILIO_ROOT, TwilioClient, twilio_sid
from cobro.render.labels import voice_label

# Twilio error codes of a call that concern the number called.
CALL_RECIPIENT_CODES = {
    13223: "not a valid phone number",
    13224: "not a valid phone number",
    13225: "the number cannot be called (blocked or premium)",
    13227: "the destination region is not enabled for calls",
    21211: "not a valid phone number",
    21215: "the destination region is not enabled for calls",
    21217: "not a valid phone number",
}
# What the status callback asks Twilio to report (the final ``completed`` always comes).
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
PRESS_KEY = "1"


def call_twiml(
    text: str,
    *,
    language: str,
    speech: str,
    voice: str | None,
    gather_url: str | None,
) -> str:
    """The TwiML of a call: ``text`` spoken in ``speech`` (es-ES) with ``voice``, then,
    with ``gather_url``, the offer to press 1 for the pay link by SMS (said twice)."""
    say: dict[str, Any] = {"language": speech}
    if voice:
        say["voice"] = voice
    response = VoiceResponse()
    if gather_url is None:
        response.say(text, **say)
        response.hangup()
        return str(response)
    gather = Gather(num_digits=1, action=gather_url, method="POST", timeout=6)
    gather.say(text, **say)
    gather.pause(length=1)
    gather.say(voice_label(language, "press"), **say)
    response.append(gather)
    response.say(voice_label(language, "bye"), **say)
    response.hangup()
    return str(response)


def answer_twiml(language: str, speech: str, voice: str | None, *, sent: bool) -> str:
    """What the callee hears after pressing a key: the link is on its way, or goodbye."""
    say: dict[str, Any] = {"language": speech}
    if voice:
        say["voice"] = voice
    response = VoiceResponse()
    response.say(voice_label(language, "sms_sent" if sent else "bye"), **say)
    response.hangup()
    return str(response)


def hangup_twiml() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


class VoiceChannel:
    """Calls ``Outgoing.address`` and speaks ``Outgoing.text`` (``meta['language']`` is the
    message's language, ``meta['speech']`` and ``meta['voice']`` how it is spoken)."""

    name: ClassVar[str] = "voice"
    reports_back: ClassVar[bool] = True  # every call's outcome comes by status callback

    def __init__(
        self,
        account_sid: str,
        auth_token: str | None,
        caller_id: str,
        *,
        callback_base: str,
        api_url: str = TWILIO_ROOT,
        status_callback: str | None = None,
        machine_detection: bool = True,
        voicemail: bool = False,
        press_for_sms: bool = True,
        ring_seconds: int = 30,
        cost_per_call: Decimal = Decimal("0.10"),
        timeout_s: float = 15.0,
        token_source: str = "the auth token",
    ) -> None:
        self.account_sid = account_sid
        self.caller_id = caller_id
        self.callback_base = callback_base.rstrip("/")  # .../callbacks/COMPANY/twilio
        self.api_url = api_url
        self.status_callback = status_callback or f"{self.callback_base}/call"
        self.machine_detection = machine_detection
        self.voicemail = voicemail  # wait for the beep to leave the message on a machine
        self.press_for_sms = press_for_sms
        self.ring_seconds = ring_seconds
        self.cost_per_call = cost_per_call
        self.timeout_s = timeout_s
        self.token_source = token_source
        self.twilio = TwilioClient(account_sid, auth_token, api_url, timeout_s)
        self.handovers = Handovers()

    def _with_ref(self, url: str, message: Outgoing) -> str:
        if not message.ref:
            return url
        return f"{url}{'&' if '?' in url else '?'}ref={message.ref}"

    def handover(self, message: Outgoing) -> bytes:
        """The TwiML this channel has Twilio play for ``message``."""
        if message.raw is not None:  # a resend: the call as first made
            return message.raw
        language = message.meta.get("language", "en")
        gather = None
        if self.press_for_sms and message.url:
            gather = self._with_ref(f"{self.callback_base}/gather", message)
        return call_twiml(
            message.text,
            language=language,
            speech=message.meta.get("speech", "en-US"),
            voice=message.meta.get("voice") or None,
            gather_url=gather,
        ).encode()

    def cost_of(self, message: Outgoing) -> Decimal:
        return self.cost_per_call

    async def start(self) -> None:
        await self.twilio.start()

    async def stop(self) -> None:
        await self.twilio.stop()

    async def send(self, message: Outgoing) -> str:
        client = await self.twilio.client(f"calls are not set up: {self.token_source} is empty")
        twiml = self.handover(message)
        args: dict[str, Any] = {
            "to": message.address,
            "from_": self.caller_id,
            "url": self._with_ref(f"{self.callback_base}/twiml", message),
            "method": "POST",
            "status_callback": self._with_ref(self.status_callback, message),
            "status_callback_event": CALL_EVENTS,
            "status_callback_method": "POST",
            "timeout": self.ring_seconds,
        }
        if self.machine_detection:
            args["machine_detection"] = "DetectMessageEnd" if self.voicemail else "Enable"
        self.handovers.keep(message, twiml)
        return await twilio_sid(
            client.calls.create_async(**args), CALL_RECIPIENT_CODES, "channels.voice"
        )
