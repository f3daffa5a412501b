"""Cobro: a self-hosted engine for collections and payment notifications.

The public Python API::

    ws = cobro.open_workspace("path/to/workspace")
    cobro.import_file(ws, "receivables", Path("receivables.csv"), now)
    report = cobro.run_day(ws, date(2026, 3, 1))
"""

from __future__ import annotations

import importlib
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

# Where each name of the public API lives. They are imported on first use, so that
# importing one part of Cobro (``cobro.intake.importer`` for an import) does not load
# every other (the channels' HTTP clients, the PDF renderer).
_HOME = {
    "Money": "cobro.domain.money",
    "RunReport": "cobro.engine.runs",
    "dispatch_due": "cobro.engine.runs",
    "run_day": "cobro.engine.runs",
    "import_file": "cobro.intake.importer",
    "import_records": "cobro.intake.importer",
    "Workspace": "cobro.workspace",
    "open_workspace": "cobro.workspace",
    **dict.fromkeys(
        (
            "CobroError",
            "ConfigError",
            "CurrencyMismatch",
            "PermanentFailure",
            "SenderNotConfigured",
            "TemplateError",
            "TemporaryFailure",
            "WorkspaceError",
        ),
        "cobro.errors",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'cobro' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


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
