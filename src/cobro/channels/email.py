"""Email: MIME built once, delivered over SMTP (aiosmtplib) or caught in the workspace."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar, Protocol

import aiosmtplib

from cobro.channels.base import Handovers, Outgoing
from cobro.errors import ChannelDown, PermanentFailure, TemporaryFailure
from cobro.render.mime import Envelope, FilePart, InlinePart, build_email


class MailTransport(Protocol):
    """Moves finished message bytes to their recipient."""

    async def start(self) -> None: ...

    async def deliver(self, sender: str, recipient: str, data: bytes, name: str) -> str: ...

    async def stop(self) -> None: ...


class CaptureTransport:
    """Catches mail in a directory, one ``.eml`` file per message: the embedded default."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def start(self) -> None:
        return None

    async def deliver(self, sender: str, recipient: str, data: bytes, name: str) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{name}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return f"capture:{path.name}"

    async def stop(self) -> None:
        return None


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    tls: bool = False
    connections: int = 4
    timeout_s: float = 30.0

    def __repr__(self) -> str:  # never print the password
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={'***' if self.password else None}, connections={self.connections})"
        )


class SmtpTransport:
    """A pool of persistent SMTP connections; each message goes over a free one."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._free: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._all: list[aiosmtplib.SMTP] = []

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.tls,
            start_tls=s.starttls,
            timeout=s.timeout_s,
            username=s.username,
            password=s.password,
        )

    async def start(self) -> None:
        for _ in range(self.settings.connections):
            client = self._client()
            self._all.append(client)
            self._free.put_nowait(client)

    async def deliver(self, sender: str, recipient: str, data: bytes, name: str) -> str:
        client = await self._free.get()
        try:
            reused = client.is_connected
            if not reused:
                await client.connect()
            try:
                _errors, reply = await client.sendmail(sender, [recipient], data)
            except aiosmtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # A kept-open connection the server closed while idle: reconnect once.
                client.close()
                await client.connect()
                _errors, reply = await client.sendmail(sender, [recipient], data)
            return reply.strip() or "250"
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [e.code for e in exc.recipients]
            err = f"recipient refused: {'; '.join(str(e) for e in exc.recipients)}"
            if codes and all(c == 421 for c in codes):
                client.close()
                raise ChannelDown(err) from exc
            if codes and all(400 <= c < 500 for c in codes):
                raise TemporaryFailure(err) from exc
            raise PermanentFailure(err) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the server is closing the connection: it takes nothing now
                client.close()
                raise ChannelDown(f"SMTP {exc.code} {exc.message}") from exc
            if 400 <= exc.code < 500:
                raise TemporaryFailure(f"SMTP {exc.code} {exc.message}") from exc
            raise PermanentFailure(f"SMTP {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise ChannelDown(f"SMTP connection to {self.settings.host}: {exc}") from exc
        except asyncio.CancelledError:
            client.close()  # stopped mid-conversation (a deadline): the connection is unusable
            raise
        finally:
            self._free.put_nowait(client)

    async def stop(self) -> None:
        for client in self._all:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
        self._all.clear()


class EmailChannel:
    """The email channel: builds the MIME message and hands it to a transport."""

    name: ClassVar[str] = "email"

    def __init__(
        self,
        transport: MailTransport,
        sender_email: str,
        sender_name: str,
        reply_to: str | None,
        cost: Decimal,
        clock: datetime,
        bounce_domain: str | None = None,
    ) -> None:
        self.transport = transport
        self.bounce_domain = bounce_domain
        self.sender_email = sender_email
        self.sender_name = sender_name
        self.reply_to = reply_to
        self.cost = cost
        self.clock = clock
        self.handovers = Handovers()

    def cost_of(self, message: Outgoing) -> Decimal:
        return self.cost

    @property
    def parallel(self) -> int:
        """How many messages may be on the wire at once: one per SMTP connection."""
        settings = getattr(self.transport, "settings", None)
        return settings.connections if isinstance(settings, SmtpSettings) else 4

    async def start(self) -> None:
        await self.transport.start()

    async def stop(self) -> None:
        await self.transport.stop()

    def build(self, message: Outgoing) -> bytes:
        env = Envelope(
            sender_email=self.sender_email,
            sender_name=self.sender_name,
            to_email=message.address,
            to_name=message.recipient_name,
            reply_to=self.reply_to,
            message_id=message.message_id,
            date=self.clock,
        )
        files = [FilePart(a.filename, a.content_type, a.data) for a in message.attachments]
        inline = [
            InlinePart(i.content_id, i.filename, i.content_type, i.data) for i in message.inline
        ]
        return build_email(
            env, message.subject, message.text, message.html, files, message.headers, inline
        )

    def envelope_sender(self, message: Outgoing) -> str:
        """The return path bounces come back to: with a bounce domain, a VERP address that
        names the delivery (``bounce+REF@DOMAIN``); otherwise the sender."""
        if self.bounce_domain and message.ref:
            return verp_address(message.ref, self.bounce_domain)
        return self.sender_email

    async def send(self, message: Outgoing) -> str:
        data = message.raw if message.raw is not None else self.build(message)
        self.handovers.keep(message, data)
        name = message.message_id.strip("<>").split("@")[0]
        return await self.transport.deliver(
            self.envelope_sender(message), message.address, data, name
        )


VERP_LOCAL = "bounce"


def verp_address(ref: str, domain: str) -> str:
    """The VERP return path of the delivery ``ref``."""
    return f"{VERP_LOCAL}+{ref}@{domain}"


def verp_ref(address: str, domain: str | None = None) -> str | None:
    """The delivery reference a VERP return path carries (``bounce+REF@DOMAIN``), else
    None; with ``domain``, only an address of that domain counts."""
    local, at, host = address.strip().strip("<>").rpartition("@")
    if not at or (domain is not None and host.lower() != domain.lower()):
        return None
    prefix, plus, ref = local.partition("+")
    if not plus or prefix.lower() != VERP_LOCAL or not ref.isalnum():
        return None
    return ref.lower()
