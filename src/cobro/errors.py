"""Every error Cobro raises, as one tree.

CobroError
├── WorkspaceError          no workspace, or one that cannot be opened
│   └── DatabaseUnavailable a database URL that is not usable, or a database not reached
├── ConfigError             cobro.yaml is invalid (carries every problem found)
│   └── SenderNotConfigured no valid sender address: nothing may be sent
├── CurrencyMismatch        arithmetic across two currencies
├── ImportError_            an import file cannot be read at all (row problems are data)
├── TemplateError           a template is missing, unsafe or fails to render
├── EvidenceKeyError        the evidence signing key or checkpoint file cannot be used
└── ChannelError            a channel could not deliver a message
    ├── TemporaryFailure    worth retrying later (connection refused, 4xx reply)
    │   └── ChannelDown     the channel itself does not answer (no connection, 421)
    └── PermanentFailure    retrying will not help (5xx reply, bad address)
"""

from __future__ import annotations

from dataclasses import dataclass


class CobroError(Exception):
    """Base of every error raised by Cobro."""


class WorkspaceError(CobroError):
    """The workspace directory is missing or cannot be used."""


class DatabaseUnavailable(WorkspaceError):
    """The database URL is not usable, or the database cannot be reached or opened."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a configuration file, with where it is."""

    file: str
    line: int | None
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.problem}" if self.field else f"{where}: {self.problem}"
        )


class ConfigError(CobroError):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SenderNotConfigured(ConfigError):
    """No valid sender address is configured, so no message may be sent."""


class CurrencyMismatch(CobroError, ValueError):
    """Two amounts in different currencies were combined."""


class ImportError_(CobroError):
    """An import file cannot be read at all (unknown format, missing columns)."""


class TemplateError(CobroError):
    """A template is missing, unsafe, or fails to render."""


class EvidenceKeyError(CobroError):
    """The key that signs evidence checkpoints, or their file, cannot be read or written."""


class ChannelError(CobroError):
    """A channel could not deliver a message."""


class TemporaryFailure(ChannelError):
    """Delivery failed in a way that may succeed later."""


class ChannelDown(TemporaryFailure):
    """The channel itself cannot be reached (connection refused or timed out, SMTP 421):
    every message on it would fail the same way for now."""


class PermanentFailure(ChannelError):
    """Delivery failed in a way that retrying will not fix."""


class AddressGone(PermanentFailure):
    """The address no longer exists (an expired push subscription): stop using it."""
