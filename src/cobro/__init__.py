"""Cobro: a self-hosted engine for collections and payment notifications.

The public Python API::

    ws = cobro.open_workspace("path/to/workspace")
    cobro.import_file(ws, "receivables", Path("receivables.csv"), now)
    report = cobro.run_day(ws, date(2026, 3, 1))

Each name is imported on first use (PEP 562), so that ``import cobro`` and the
``cobro`` command start without loading the database, rendering and channel
libraries a command may not need.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cobro.domain.money import Money
    from cobro.engine.runs import RunReport, dispatch_due, run_day
    from cobro.errors import (
        CobroError,
        ConfigError,
        CurrencyMismatch,
        PermanentFailure,
        SenderNotConfigured,
        TemplateError,
        TemporaryFailure,
        WorkspaceError,
    )
    from cobro.intake.importer import import_file, import_records
    from cobro.workspace import Workspace, open_workspace

_WHERE = {
    "CobroError": "cobro.errors",
    "ConfigError": "cobro.errors",
    "CurrencyMismatch": "cobro.errors",
    "Money": "cobro.domain.money",
    "PermanentFailure": "cobro.errors",
    "RunReport": "cobro.engine.runs",
    "SenderNotConfigured": "cobro.errors",
    "TemplateError": "cobro.errors",
    "TemporaryFailure": "cobro.errors",
    "Workspace": "cobro.workspace",
    "WorkspaceError": "cobro.errors",
    "dispatch_due": "cobro.engine.runs",
    "import_file": "cobro.intake.importer",
    "import_records": "cobro.intake.importer",
    "open_workspace": "cobro.workspace",
    "run_day": "cobro.engine.runs",
}

__all__ = [
    "CobroError",
    "ConfigError",
    "CurrencyMismatch",
    "Money",
    "PermanentFailure",
    "RunReport",
    "SenderNotConfigured",
    "TemplateError",
    "TemporaryFailure",
    "Workspace",
    "WorkspaceError",
    "dispatch_due",
    "import_file",
    "import_records",
    "open_workspace",
    "run_day",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cobro' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
