"""Cobro: a self-hosted engine for collections and payment notifications.

The public Python API::

    ws = cobro.open_workspace("path/to/workspace")
    cobro.import_file(ws, "receivables", Path("receivables.csv"), now)
    report = cobro.run_day(ws, date(2026, 3, 1))
"""

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
