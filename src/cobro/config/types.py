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


def _local_names(value: dict[str, str]) -> dict[str, str]:
    """A name per language: keys are language codes (es, en), names are not empty."""
    for language, name in value.items():
        if not re.fullmatch(r"[a-z]{2,3}", language):
            raise ValueError(f"{language!r} is not a language code (es, en)")
        if not name.strip():
            raise ValueError(f"the name in {language!r} is empty")
    return {language: name.strip() for language, name in value.items()}


LocalNames = Annotated[dict[str, str], AfterValidator(_local_names)]
