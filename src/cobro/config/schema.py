"""The schema of ``cobro.yaml``: company, channels, policies and their assignment."""

from __future__ import annotations

import difflib
import re
from datetime import time
from decimal import Decimal
from functools import cached_property
from pathlib import PurePosixPath
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cobro.config.actions import ActionConfig, ConfigurableRecipient, SegmentConfig
from cobro.config.calendar import CalendarConfig
from cobro.config.notices import BankingNotices, SubscriptionNotices
from cobro.config.types import ClockTime, EmailAddress, LocalNames
from cobro.domain.actions import ScheduledAction
from cobro.domain.addresses import ascii_address
from cobro.domain.assignment import Rule
from cobro.domain.model import DeliveryMode, Phase, Policy, Recipient
from cobro.domain.money import Money
from cobro.domain.segments import Segment
from cobro.intake.columns import COLUMNS, is_column
from cobro.intake.formats import check_date_format

_WHEN = re.compile(
    r"^\s*(?:(?P<n>\d+)\s+days?\s+(?P<dir>before|after)\s+due|on\s+due)\s*$", re.IGNORECASE
)
# First segments of outbox steps that are not policy phases.
RESERVED_STEP_PREFIXES = frozenset(
    {
        "action",
        "receipt",
        "unpaid",
        "upcoming",
        "admin",
        "banking",
        "resend",
        "webhook",
        "paylink",
    }
)
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_IPV6 = re.compile(r"\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_when(text: str) -> int:
    """``"7 days before due"`` -> -7, ``"on due"`` -> 0, ``"3 days after due"`` -> 3."""
    m = _WHEN.match(text)
    if not m:
        raise ValueError(
            f"{text!r} is not a moment; write 'N days before due', 'on due' or 'N days after due'"
        )
    if m.group("n") is None:
        return 0
    n = int(m.group("n"))
    return -n if m.group("dir").lower() == "before" else n


class Sender(_Strict):
    email: str
    name: str | None = None

    @field_validator("email")
    @classmethod
    def _valid(cls, v: str) -> str:
        return ascii_address(v, "not a valid sender address")


LOGO_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")


def check_logo_path(relative: str) -> str:
    """``relative`` if it can name a logo: a PNG, JPEG or GIF path inside the workspace."""
    p = PurePosixPath(relative)
    if p.is_absolute() or ".." in p.parts or not p.name:
        raise ValueError("the logo is a file inside the workspace, e.g. logo.png")
    if p.suffix.lower() not in LOGO_SUFFIXES:
        raise ValueError(f"a logo is a .png, .jpg or .gif file, not {p.suffix or relative!r}")
    return relative


class Branding(_Strict):
    logo_url: str | None = None
    logo_file: str | None = Field(
        default=None, description="a PNG, JPEG or GIF inside the workspace, embedded in messages"
    )
    color: str = "#1f4e79"
    footer: str | None = None

    @field_validator("logo_file")
    @classmethod
    def _logo_file(cls, v: str | None) -> str | None:
        return v if v is None else check_logo_path(v)

    @field_validator("color")
    @classmethod
    def _color(cls, v: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", v):
            raise ValueError("a colour is written #RRGGBB")
        return v


class GoLive(_Strict):
    """The first days on an existing portfolio: claims ramp up instead of all at once."""

    days: Annotated[int, Field(ge=0, le=365)] = 30
    max_claims_per_day: Annotated[int, Field(ge=1)] | None = None


class Company(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
    name: str
    locale: str = "en_US"
    currency: str = "EUR"
    timezone: str = "UTC"
    send_time: ClockTime = time(9, 0)
    sender: Sender | None = None
    reply_to: EmailAddress | None = None
    portal_url: str = "http://localhost:8000/portal"
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(:\d+)?/?$",
        description="the address `cobro serve` is reached at from outside (status callbacks, "
        "unsubscribe links); default: portal_url without its /portal",
    )
    crm_url: str | None = None
    branding: Branding = Branding()
    max_catch_up_days: Annotated[int, Field(ge=0, le=365)] = 30
    action_catch_up_days: Annotated[int, Field(ge=0, le=31)] = 3
    link_max_age_days: Annotated[int, Field(ge=1, le=365)] = 30
    max_claims_per_debtor_per_day: Annotated[int, Field(ge=1, le=10)] = 1
    go_live: GoLive = GoLive()
    phone_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None,
        description="country for phone numbers written without +code (default: the locale's)",
    )

    @property
    def server_url(self) -> str:
        """The public base URL of ``cobro serve``, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        base = self.portal_url.rstrip("/")
        return base.removesuffix("/portal")

    @property
    def region(self) -> str | None:
        """The country national phone numbers belong to: ``phone_region`` or the locale's."""
        return self.phone_region or Locale.parse(self.locale).territory

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str) -> str:
        try:
            Locale.parse(v)
        except (UnknownLocaleError, ValueError) as exc:
            raise ValueError(f"unknown locale {v!r}") from exc
        return v

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        Money.of("0", v)
        return v.upper()


class Smtp(_Strict):
    """Where email goes. ``host: capture`` writes each message to the workspace's mail/."""

    host: str = "capture"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="name of the environment variable holding the password"
    )
    starttls: bool = False
    tls: bool = False
    connections: Annotated[int, Field(ge=1, le=64)] = 4
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        v = v.strip()
        if v == "capture" or _HOST.fullmatch(v) or _IPV6.fullmatch(v):
            return v
        raise ValueError(f"{v!r} is not a host name or IP address (or 'capture')")


class Bounces(_Strict):
    """Where bounces come back, and how many temporary failures suppress an address."""

    domain: str | None = Field(
        default=None,
        description="with it, each email's return path is bounce+REF@DOMAIN (VERP), which "
        "names its delivery; its MX leads to `cobro bounces serve`",
    )
    soft_limit: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3, description="temporary failures (soft bounces) that suppress an address"
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().lower().rstrip(".")
        if not _HOST.fullmatch(v) or "." not in v:
            raise ValueError(f"{v!r} is not a domain name")
        return v


class EmailChannel(_Strict):
    smtp: Smtp = Smtp()
    cost: Decimal = Decimal("0.0005")
    bounces: Bounces = Bounces()
    unsubscribe: bool = Field(
        default=False,
        description="reminders carry a one-click List-Unsubscribe (RFC 8058); phases marked "
        "unsubscribable: false never do",
    )


class SmsChannel(_Strict):
    """SMS through Twilio's Messages API. The auth token is read from the environment."""

    provider: Literal["twilio"] = "twilio"
    account_sid: Annotated[str, Field(pattern=r"^AC[0-9a-fA-F]{32}$")]
    auth_token_env: str = Field(
        default="TWILIO_AUTH_TOKEN",
        description="name of the environment variable holding the auth token",
    )
    sender: str = Field(
        description="E.164 number, alphanumeric sender id or messaging service SID (MG...)"
    )
    api_url: str = Field(
        default="https://api.twilio.com",
        pattern=r"^https?://[^\s/]+(:\d+)?/?$",
        description="Twilio's API root: a regional edge, or a local test server",
    )
    status_callback: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+",
        description="where Twilio reports each message's status (default: "
        "company.public_url + /callbacks/COMPANY/twilio/status); off: status_callbacks",
    )
    status_callbacks: bool = Field(
        default=True, description="ask Twilio to report each message's fate"
    )
    cost_per_segment: Decimal = Decimal("0.05")
    max_segments: Annotated[int, Field(ge=1, le=10)] = 3
    # Accented letters GSM-7 lacks are sent without the accent (ó -> o), so a message stays
    # at 160 characters a segment instead of 70.
    smart_encoding: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str) -> str:
        v = v.strip()
        if re.fullmatch(r"\+[1-9]\d{6,14}", v) or re.fullmatch(r"MG[0-9a-fA-F]{32}", v):
            return v
        if re.fullmatch(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}", v):
            return v  # alphanumeric sender id
        raise ValueError(
            f"{v!r} is not an E.164 number (+34600111222), a messaging service SID (MG...) "
            "or an alphanumeric sender id (up to 11 letters and digits)"
        )


VOICE_LANGUAGES = {"es": "es-ES", "en": "en-US"}


class VoiceChannel(_Strict):
    """Automated calls through Twilio's Calls API: the message is spoken (TwiML ``<Say>``)
    in the debtor's language. The auth token is read from the environment."""

    provider: Literal["twilio"] = "twilio"
    account_sid: Annotated[str, Field(pattern=r"^AC[0-9a-fA-F]{32}$")]
    auth_token_env: str = Field(
        default="TWILIO_AUTH_TOKEN",
        description="name of the environment variable holding the auth token",
    )
    caller_id: str = Field(description="the E.164 number calls come from (a Twilio number)")
    api_url: str = Field(
        default="https://api.twilio.com",
        pattern=r"^https?://[^\s/]+(:\d+)?/?$",
        description="Twilio's API root: a regional edge, or a local test server",
    )
    status_callback: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+",
        description="where Twilio reports each call's outcome (default: "
        "company.public_url + /callbacks/COMPANY/twilio/call)",
    )
    machine_detection: bool = Field(
        default=True,
        description="answering-machine detection: a call a machine answers is not a reached "
        "person (it is retried like an unanswered one)",
    )
    voicemail: bool = Field(
        default=False,
        description="leave the message on an answering machine (after the beep) too",
    )
    press_for_sms: bool = Field(
        default=True,
        description="the callee may press 1 to be sent the pay link by SMS (needs channels.sms)",
    )
    voices: dict[str, str] = Field(
        default={"es": "Polly.Lucia", "en": "Polly.Joanna"},
        description="text-to-speech voice per language (Twilio's 'Polly.*', 'Google.*', "
        "'man', 'woman' or 'alice')",
    )
    languages: dict[str, str] = Field(
        default=VOICE_LANGUAGES,
        description="the speech language (BCP 47, es-ES) per message language",
    )
    ring_seconds: Annotated[int, Field(ge=5, le=600)] = Field(
        default=30, description="how long the phone rings before the call counts as unanswered"
    )
    cost_per_call: Decimal = Decimal("0.10")
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0

    @field_validator("caller_id")
    @classmethod
    def _caller(cls, v: str) -> str:
        v = v.strip()
        if not re.fullmatch(r"\+[1-9]\d{6,14}", v):
            raise ValueError(f"{v!r} is not an E.164 number (+34910000000): calls need a number")
        return v

    @field_validator("voices")
    @classmethod
    def _voices(cls, v: dict[str, str]) -> dict[str, str]:
        for lang, voice in v.items():
            if not re.fullmatch(r"[a-z]{2,3}", lang):
                raise ValueError(f"voices: {lang!r} is not a language code (es, en)")
            if not re.fullmatch(r"(man|woman|alice|(Polly|Google)\.[A-Za-z0-9_.-]{2,60})", voice):
                raise ValueError(
                    f"voices.{lang}: {voice!r} is not a Twilio voice "
                    "(Polly.Lucia, Google.es-ES-Standard-A, man, woman, alice)"
                )
        return v

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: dict[str, str]) -> dict[str, str]:
        for lang, speech in v.items():
            if not re.fullmatch(r"[a-z]{2,3}", lang):
                raise ValueError(f"languages: {lang!r} is not a language code (es, en)")
            if not re.fullmatch(r"[a-z]{2,3}-[A-Z]{2}", speech):
                raise ValueError(f"languages.{lang}: {speech!r} is not a speech language (es-ES)")
        return {**VOICE_LANGUAGES, **v}

    def speech(self, language: str) -> tuple[str, str | None]:
        """(speech language, voice) for a message in ``language``."""
        return self.languages.get(language, f"{language}-{language.upper()}"), self.voices.get(
            language
        )


class PushChannel(_Strict):
    """Web Push (RFC 8030) with VAPID (RFC 8292) to the browsers and apps members subscribed."""

    subject: str = Field(description="VAPID contact: mailto:someone@example.com or https://site")
    private_key_file: str = Field(
        default="vapid_private.pem",
        description="PEM file, relative to the workspace, made by `cobro push keys`",
    )
    private_key_env: str = Field(
        default="COBRO_VAPID_PRIVATE_KEY",
        description="environment variable that, when set, holds the private key instead",
    )
    ttl_s: Annotated[int, Field(ge=0, le=2419200)] = 86400
    urgency: Literal["very-low", "low", "normal", "high"] = "normal"
    cost: Decimal = Decimal(0)
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str) -> str:
        if v.startswith("mailto:"):
            ascii_address(v[7:], "not a valid mailto: address")
            return v
        if re.fullmatch(r"https://(localhost|[\w-]+(\.[\w-]+)+)", v):
            return v
        raise ValueError(
            "the VAPID subject is a mailto: address or a site's https:// address without a path"
        )


ChannelName = Literal["email", "sms", "push", "voice"]


class Channels(_Strict):
    email: EmailChannel = EmailChannel()
    sms: SmsChannel | None = None
    push: PushChannel | None = None
    voice: VoiceChannel | None = None

    @model_validator(mode="after")
    def _pay_link_by_sms(self) -> Channels:
        if self.voice is not None and self.voice.press_for_sms and self.sms is None:
            raise ValueError(
                "voice.press_for_sms: the pay link goes by SMS but channels.sms is not "
                "configured (configure it, or set press_for_sms: false)"
            )
        return self


class CallSettings(_Strict):
    """How a phase calls (``channels: [voice, ...]``): the call is tried again when nobody
    answers, and a debtor gets at most so many calls a week."""

    attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        default=3,
        description="calls of one message to one number, the first included, before it goes "
        "on the phase's next channel (busy, no answer, an answering machine)",
    )
    retry_after_minutes: Annotated[int, Field(ge=5, le=1440)] = Field(
        default=120, description="wait after an unanswered call before calling again"
    )
    max_per_7_days: Annotated[int, Field(ge=1, le=50)] = Field(
        default=3,
        description="calls to one debtor in any 7 days, every phase counted; beyond, the "
        "message goes on the phase's next channel",
    )


class PhaseConfig(_Strict):
    key: Annotated[str, Field(pattern=_KEY.pattern)]
    name: str
    when: str
    template: str
    mode: DeliveryMode = DeliveryMode.FULL
    channels: Annotated[list[ChannelName], Field(min_length=1)] = ["email"]
    recipients: list[ConfigurableRecipient] = [Recipient.DEBTOR]
    repeat_every_days: Annotated[int, Field(ge=1, le=365)] | None = None
    max_repeats: Annotated[int, Field(ge=0, le=1000)] | None = None
    min_balance: Decimal = Decimal(0)
    catch_up: bool | None = None
    block_account: bool = False
    min_gap_days: Annotated[int, Field(ge=1, le=365)] | None = None
    attach_statement: bool = Field(
        default=False, description="the email carries the debtor's statement of account as a PDF"
    )
    unsubscribable: bool = Field(
        default=True,
        description="false: a legally required notice, sent by email even to a debtor who "
        "unsubscribed (and without an unsubscribe link)",
    )
    webhook: Annotated[str, Field(pattern=_KEY.pattern)] | None = Field(
        default=None,
        description="the webhook endpoint (by name) sent a ticket.requested when it is sent",
    )
    names: LocalNames = Field(
        default={},
        description="the phase's name in other languages, by language code (es: ..., en: "
        "...): what a debtor or a staff member reading in that language sees; `name` "
        "otherwise",
    )
    call: CallSettings = Field(
        default=CallSettings(),
        description="voice: attempts of an unanswered call, the wait between them and the "
        "weekly cap of calls per debtor",
    )

    @field_validator("when")
    @classmethod
    def _when(cls, v: str) -> str:
        parse_when(v)
        return v

    @model_validator(mode="after")
    def _statement(self) -> PhaseConfig:
        if self.attach_statement and "email" not in self.channels:
            raise ValueError(
                "attach_statement needs email among the phase's channels: "
                "SMS and push carry no attachment"
            )
        if "call" in self.model_fields_set and "voice" not in self.channels:
            raise ValueError("call: settings need voice among the phase's channels")
        if self.attach_statement and self.mode is DeliveryMode.LINK:
            raise ValueError(
                "attach_statement does not go with mode: link (a link-only claim leaves "
                "the debt out of the message; the statement would put it back)"
            )
        return self

    @property
    def offset_days(self) -> int:
        return parse_when(self.when)


class PolicyConfig(_Strict):
    description: str | None = None
    phases: list[PhaseConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> PolicyConfig:
        seen_keys: set[str] = set()
        seen_moments: dict[int, str] = {}
        for ph in self.phases:
            if ph.key in seen_keys:
                raise ValueError(f"phase key {ph.key!r} is used twice")
            seen_keys.add(ph.key)
            if ph.offset_days in seen_moments:
                raise ValueError(
                    f"phases {seen_moments[ph.offset_days]!r} and {ph.key!r} fall on the same day"
                )
            seen_moments[ph.offset_days] = ph.key
        return self


class AssignRule(_Strict):
    """Debtors matching every condition of ``where`` get ``policy``."""

    policy: str
    where: dict[Literal["kind", "group", "language", "tag"], str]


def _import_column(name: str) -> str:
    """A column of some import kind (checked against the mapping's kind afterwards)."""
    if any(is_column(k, name) for k in COLUMNS):
        return name
    known = sorted({c for cols in COLUMNS.values() for c in cols})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{name!r} is not an import column{hint}; the columns are {', '.join(known)}")


ImportColumn = Annotated[str, AfterValidator(_import_column)]


class ImportMapping(_Strict):
    """How to read a file whose columns or formats are not Cobro's (``imports:`` or ``--map``).

    ``columns`` maps a Cobro column to the file's header for it; ``decimal`` and
    ``date_format`` declare how the file writes amounts and dates.
    """

    kind: Literal["customers", "contacts", "receivables", "payments"] | None = None
    columns: dict[ImportColumn, str] = {}
    decimal: Literal[",", "."] | None = None
    date_format: str | None = None

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, v: str | None) -> str | None:
        return None if v is None else check_date_format(v)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        kind = info.data.get("kind")
        kinds = [kind] if kind else list(COLUMNS)
        for col in v:
            if not any(is_column(k, col) for k in kinds):
                known = sorted({c for k in kinds for c in COLUMNS[k]})
                close = difflib.get_close_matches(col, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"{col!r} is not a column of {kind or 'any kind'}{hint}; "
                    f"the columns are {', '.join(known)}"
                )
        seen: dict[str, str] = {}
        for col, header in v.items():
            name = header.strip().lower()
            if not name:
                raise ValueError(f"{col}: the file's column name is empty")
            if name in seen:
                raise ValueError(f"{seen[name]!r} and {col!r} both read the column {header!r}")
            seen[name] = col
        return v


class Dispatch(_Strict):
    """How sending copes with faults: retries, deadlines and the circuit breaker."""

    retry_hours: Annotated[float, Field(gt=0, le=720)] = Field(
        default=72, description="temporary failures are retried this long before a claim fails"
    )
    retry_max_wait_minutes: Annotated[int, Field(ge=5, le=1440)] = 60
    connection_deadline_s: Annotated[float, Field(gt=0, le=300)] = Field(
        default=60, description="longest one message may hold a connection, whatever the server"
    )
    pass_deadline_s: Annotated[float, Field(gt=0, le=86400)] = Field(
        default=1800, description="no message is started after this long; the rest waits"
    )
    breaker_failures: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=4, description="failed connections in a row that stop a channel for a while"
    )
    breaker_pause_s: Annotated[float, Field(gt=0, le=3600)] = 30
    in_doubt_minutes: Annotated[int, Field(ge=5, le=10080)] = Field(
        default=60,
        description="an SMS or call handed over whose answer was never recorded (the "
        "dispatcher stopped) and that no report settled: after this long it is a technical "
        "failure and its claim goes on the next channel, never sent twice on the same one",
    )


class BankDetails(_Strict):
    """Where a debtor can pay by transfer; shown on the portal and the statement."""

    holder: str
    iban: str
    bic: str | None = None
    bank: str | None = None

    @field_validator("iban")
    @classmethod
    def _iban(cls, v: str) -> str:
        compact = re.sub(r"\s+", "", v).upper()
        if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}", compact):
            raise ValueError("not an IBAN (two letters, two digits, then 10-30 letters/digits)")
        rearranged = compact[4:] + compact[:4]
        if int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 != 1:
            raise ValueError("the IBAN's check digits are wrong")
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


PAY_URL_FIELDS = ("reference", "amount", "currency", "customer")


class Portal(_Strict):
    """What a debtor can do on the page their link opens."""

    pay_url: str | None = Field(
        default=None,
        description="the payment page, with {reference}, {amount}, {currency}, {customer}",
    )
    bank: BankDetails | None = None
    pay_instructions: str | None = Field(
        default=None, description="how to pay, in words: printed on statements below the bank"
    )
    promise_max_days: Annotated[int, Field(ge=1, le=365)] = 30
    promise_grace_days: Annotated[int, Field(ge=0, le=60)] = 3
    disputes: bool = True
    dispute_attachment_max_kb: Annotated[int, Field(ge=0, le=20480)] = 5120

    @field_validator("pay_url")
    @classmethod
    def _pay_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"https?://[^/\s]+", v):
            raise ValueError("the payment page is an http(s) URL")
        for name in re.findall(r"\{([^{}]*)\}", v):
            if name not in PAY_URL_FIELDS:
                known = ", ".join("{" + f + "}" for f in PAY_URL_FIELDS)
                raise ValueError(f"unknown field {{{name}}}; use {known}")
        return v


class CobroConfig(_Strict):
    company: Company
    channels: Channels = Channels()
    dispatch: Dispatch = Dispatch()
    calendar: CalendarConfig = CalendarConfig()
    portal: Portal = Portal()
    policies: dict[str, PolicyConfig] = Field(min_length=1)
    assign: list[AssignRule] = []
    default_policy: str
    segments: dict[str, SegmentConfig] = {}
    actions: list[ActionConfig] = []
    subscriptions: SubscriptionNotices = SubscriptionNotices()
    banking: BankingNotices = BankingNotices()
    imports: dict[str, ImportMapping] = {}

    @field_validator("policies")
    @classmethod
    def _names(cls, v: dict[str, PolicyConfig]) -> dict[str, PolicyConfig]:
        for name in v:
            if not _KEY.match(name):
                raise ValueError(f"policy name {name!r}: letters, digits, '-' and '_' only")
            if name in RESERVED_STEP_PREFIXES:
                raise ValueError(
                    f"policy name {name!r} is reserved; "
                    f"avoid {', '.join(sorted(RESERVED_STEP_PREFIXES))}"
                )
        return v

    @model_validator(mode="after")
    def _known_policies(self) -> CobroConfig:
        if self.default_policy not in self.policies:
            raise ValueError(f"default_policy {self.default_policy!r} is not a defined policy")
        for rule in self.assign:
            if rule.policy not in self.policies:
                raise ValueError(f"assign: policy {rule.policy!r} is not defined")
        for name, seg in self.segments.items():
            if not _KEY.match(name):
                raise ValueError(f"segment name {name!r}: letters, digits, '-' and '_' only")
            if seg.policy is not None and seg.policy not in self.policies:
                raise ValueError(f"segments.{name}.policy: {seg.policy!r} is not defined")
        self._channels_configured()
        for name in self.imports:
            if not _KEY.match(name):
                raise ValueError(f"imports: name {name!r}: letters, digits, '-' and '_' only")
        keys: set[str] = set()
        for action in self.actions:
            if action.key in keys:
                raise ValueError(f"actions: key {action.key!r} is used twice")
            keys.add(action.key)
            if action.segment not in self.segments:
                raise ValueError(f"actions.{action.key}: segment {action.segment!r} is not defined")
        return self

    def _channels_configured(self) -> None:
        """Every channel a message may go on must be set up under ``channels:``."""
        uses: list[tuple[str, list[str]]] = [
            (f"policies.{name}.phases.{ph.key}", list(ph.channels))
            for name, pc in self.policies.items()
            for ph in pc.phases
        ]
        subs = self.subscriptions
        uses.append(("subscriptions.upcoming_charge", list(subs.upcoming_charge.channels)))
        uses.append(("subscriptions.unpaid", list(subs.unpaid.channels)))
        for where, names in uses:
            if len(set(names)) != len(names):
                raise ValueError(f"{where}.channels: a channel is listed twice")
            for ch in names:
                if ch != "email" and getattr(self.channels, ch) is None:
                    raise ValueError(
                        f"{where}.channels: {ch!r} is used but channels.{ch} is not configured"
                    )

    def policy(self, name: str) -> Policy:
        """The domain policy called ``name``."""
        pc = self.policies[name]
        phases = tuple(
            Phase(
                policy=name,
                key=ph.key,
                name=ph.name,
                offset_days=ph.offset_days,
                template=ph.template,
                mode=ph.mode,
                channels=tuple(ph.channels),
                recipients=tuple(ph.recipients),
                repeat_every_days=ph.repeat_every_days,
                max_repeats=ph.max_repeats,
                min_balance_minor=Money.of(ph.min_balance, self.company.currency).minor,
                catch_up=ph.catch_up if ph.catch_up is not None else ph.offset_days > 0,
                block_account=ph.block_account,
                min_gap_days=ph.min_gap_days,
                attach_statement=ph.attach_statement,
                unsubscribable=ph.unsubscribable,
                names=tuple(sorted(ph.names.items())),
            )
            for ph in sorted(pc.phases, key=lambda p: p.offset_days)
        )
        return Policy(name, phases)

    def assignment_rules(self) -> list[Rule]:
        return [Rule(r.policy, tuple(sorted(r.where.items()))) for r in self.assign]

    def all_policies(self) -> list[Policy]:
        return [self.policy(n) for n in self.policies]

    def segment(self, name: str) -> Segment:
        """The domain segment called ``name``."""
        s = self.segments[name]
        cur = self.company.currency

        def minor(v: Decimal | None) -> int | None:
            return None if v is None else Money.of(v, cur).minor

        groups = (s.group,) if isinstance(s.group, str) else tuple(s.group or ())
        return Segment(
            name=name,
            description=s.description,
            kind=s.kind,
            groups=groups,
            language=s.language,
            tags=tuple(x.lower() for x in s.tags),
            attributes=tuple(sorted(s.attributes.items())),
            policy=s.policy,
            blocked=s.blocked,
            overdue_min=minor(s.overdue_amount.min) if s.overdue_amount else None,
            overdue_max=minor(s.overdue_amount.max) if s.overdue_amount else None,
            open_min=minor(s.open_amount.min) if s.open_amount else None,
            open_max=minor(s.open_amount.max) if s.open_amount else None,
            days_overdue_min=s.days_overdue.min if s.days_overdue else None,
            days_overdue_max=s.days_overdue.max if s.days_overdue else None,
        )

    def scheduled_actions(self) -> list[ScheduledAction]:
        return [self.action(a.key) for a in self.actions]

    def action(self, key: str) -> ScheduledAction:
        """The scheduled action with ``key`` (``KeyError`` when there is none)."""
        for a in self.actions:
            if a.key == key:
                return ScheduledAction(
                    key=a.key,
                    description=a.description,
                    type=a.type,
                    days=tuple(a.days),
                    segment=a.segment,
                    template=a.template,
                    title=a.title,
                    text=a.text,
                    attachment=a.attachment,
                    hide_pay_link=a.hide_pay_link,
                    attach_statement=a.attach_statement,
                    recipients=tuple(a.recipients),
                    task_message=a.message,
                    due_day=a.due_day,
                    due_after_days=a.due_after_days,
                    due_time=a.due_time,
                    webhook=a.webhook,
                    names=tuple(sorted(a.names.items())),
                )
        raise KeyError(key)

    @cached_property
    def _phases_by_step(self) -> dict[str, Phase]:
        return {ph.step_id: ph for policy in self.all_policies() for ph in policy.phases}

    def call_settings(self, step_id: str) -> CallSettings:
        """The ``call`` settings of the phase stored as ``policy/key`` (the defaults for
        any other step)."""
        policy, _, key = step_id.partition("/")
        pc = self.policies.get(policy)
        for ph in pc.phases if pc is not None else ():
            if ph.key == key:
                return ph.call
        return CallSettings()

    def phase_by_step(self, step_id: str) -> Phase:
        """The phase stored as ``policy/key`` on outbox rows (``KeyError`` if unknown)."""
        return self._phases_by_step[step_id]

    def all_phases(self) -> list[Phase]:
        """Every policy's phases, policy by policy (made once per configuration)."""
        return list(self._phases_by_step.values())


class ServerSettings(_Strict):
    """``cobro-server.yaml`` at a server root: what its companies share."""

    # The database every company of the root is kept in (``--db`` and
    # ``COBRO_DATABASE_URL`` override it); by default ``cobro.db`` at the root.
    database: str | None = None
