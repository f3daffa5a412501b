"""What the parts of a ``Dispatcher`` share: its settings, the company's configuration, its
channels and what a pass keeps (caches, the barriers of a batch, breakers, slots).

``Dispatcher`` (``cobro.engine.dispatch``) inherits its parts, each a class built on this
one; ``Dispatcher.__init__`` sets the attributes declared here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from cobro.channels.base import Attachment, Channel
from cobro.config import CobroConfig
from cobro.config.schema import CallSettings, Dispatch
from cobro.domain.calendar import SendCalendar
from cobro.domain.model import Policy
from cobro.engine.call_limit import WeeklyCalls
from cobro.engine.contact_caps import CapCounter
from cobro.engine.deliveries import Barriers
from cobro.engine.dispatch_report import DispatchReport
from cobro.engine.messages import MessageSpec, message_spec
from cobro.engine.sending import Breaker
from cobro.render.logo import Logo
from cobro.render.templates import TemplateSet


class DispatchState:
    """The attributes of a dispatcher its parts read (set by ``Dispatcher.__init__``), and
    the settings of a step they all look up."""

    engine: Engine
    config: CobroConfig
    config_file: str
    company_id: int
    secret: str
    templates: TemplateSet
    channels: dict[str, Channel]
    channels_open: bool
    settings: Dispatch
    as_of: datetime
    clock: Callable[[], datetime]
    batch_size: int
    files_root: Path | None
    holder: str
    orphans: frozenset[str]
    only: frozenset[int] | None
    pace: Callable[[str], Awaitable[None]] | None
    on_batch: Callable[[DispatchReport], None] | None
    breakers: dict[str, Breaker]
    sender_domain: str
    _slots: dict[str, asyncio.Semaphore]
    _company_lang: str
    _locales: dict[str, tuple[str, str]]
    _deadline: float
    _specs: dict[str, MessageSpec]
    _policies: dict[str, Policy]
    _files: dict[str, Attachment]
    _logo: Logo | None
    _barriers: Barriers
    _ahead: set[str]
    _tickets: dict[str, str]
    _calendar: SendCalendar
    _closed: dict[str, dict[str, datetime]]
    _caps: CapCounter
    _calls: WeeklyCalls
    _passed_over: bool
    _one_holder: bool

    def _call(self, step: str) -> CallSettings:
        """The ``call`` settings of the phase of ``step`` (the defaults for other steps)."""
        return self.config.call_settings(step)

    def _spec(self, step: str) -> MessageSpec:
        spec = self._specs.get(step)
        if spec is None:
            spec = self._specs[step] = message_spec(self.config, step)
        return spec
