"""Field types shared by the configuration schemas."""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from cobro.domain.addresses import ascii_address

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


def _clock_time(value: Any) -> Any:
    """Only "HH:MM" text: YAML reads an unquoted 9:00 as the number 540 (00:09)."""
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not _HHMM.match(value.strip()):
        raise ValueError(f'a time is written in quotes as "HH:MM" (e.g. "09:00"), not {value!r}')
    return value.strip()


def _address(value: str) -> str:
    return ascii_address(value, "not a valid email address")


ClockTime = Annotated[time, BeforeValidator(_clock_time)]
EmailAddress = Annotated[str, AfterValidator(_address)]
