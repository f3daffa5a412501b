"""The staff dashboard at ``/dashboard``: one router module per screen, a login, roles.

Screens (``view.SCREENS`` is the navigation): the overview (``overview``), the debtors
list (``debtors``) and a debtor's account (``account``). ``login`` logs users in and out;
``session`` finds who is asking and refuses what they may not do.
"""

from __future__ import annotations

from fastapi import FastAPI

from cobro.web.dashboard import account, debtors, login, overview

ROUTERS = (login.router, overview.router, debtors.router, account.router)


def install(app: FastAPI) -> None:
    """Add the dashboard's routes, login limits and refusal pages to ``app``."""
    login.install(app)
    for router in ROUTERS:
        app.include_router(router)
