"""The staff dashboard at ``/dashboard``: one router module per screen, a login, roles.

Screens (``view.SCREENS`` is the navigation): the overview (``overview``), the debtors
list (``debtors``) and a debtor's account (``account``); the work screens: the message log
(``messages``), the task board (``tasks``), the disputes and promises queue (``queue``),
the simulation (``simulation``), policies and templates with their preview
(``policies``), a template edited and previewed before it is saved
(``template_editing``) and a policy's phase edited (``phases``); the screens that change
the configuration, which ``settings`` saves to ``cobro.yaml``: communications
(``communications``), automatic actions (``actions``) and segments (``segments``); the
banking notifications' contacts (``banking``); and the audit log (``audit``). ``login``
logs users in and out; ``session`` finds who is asking and refuses what they may not do.
"""

from __future__ import annotations

from fastapi import FastAPI

from cobro.web.dashboard import (
    account,
    actions,
    audit,
    banking,
    communications,
    debtors,
    login,
    messages,
    overview,
    phases,
    policies,
    queue,
    segments,
    simulation,
    tasks,
    template_editing,
)

ROUTERS = (
    login.router,
    overview.router,
    debtors.router,
    account.router,
    messages.router,
    tasks.router,
    queue.router,
    simulation.router,
    policies.router,
    template_editing.router,
    phases.router,
    communications.router,
    banking.router,
    actions.router,
    segments.router,
    audit.router,
)


def install(app: FastAPI) -> None:
    """Add the dashboard's routes, login limits and refusal pages to ``app``."""
    login.install(app)
    app.state.dashboard_simulations = simulation.Simulations()
    app.state.dashboard_drafts = policies.Drafts()
    for router in ROUTERS:
        app.include_router(router)
