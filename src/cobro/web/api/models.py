"""What the API's resources look like: money as decimal strings with a currency, times in
RFC 3339 with their offset, the company's own ids (``external_id``) for its records."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

# A decimal amount, written as a string ("1234.50"): never a binary float.
Amount = Annotated[
    Decimal,
    PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "format": "decimal", "example": "1234.50"}),
]


class Strict(BaseModel):
    """An input model: unknown fields are refused (a typo is an error, not ignored)."""

    model_config = ConfigDict(extra="forbid")


class Money(BaseModel):
    amount: Amount
    currency: str = Field(description="ISO 4217 code", examples=["EUR"])


# A decimal amount given as text ("1234.50", "-50.00"): never a JSON number, which a
# client's JSON library may have rounded through a binary float. Checked like a CSV cell.
DecimalText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        json_schema_extra={"format": "decimal"},
        examples=["1234.50"],
    ),
]


def _without_nul(text: str) -> str:
    if "\x00" in text:  # no database stores one (PostgreSQL refuses it)
        raise ValueError("contains a NUL character")
    return text


# The company's own id of one of its records.
ExternalId = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_without_nul)]
