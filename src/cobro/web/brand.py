"""The company's look on every page: its colour as a style sheet and its logo file."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from cobro.render.logo import workspace_logo
from cobro.web.deps import State

router = APIRouter(prefix="/brand/{company}")

CACHE = "public, max-age=3600"


def _unknown() -> Response:
    return Response("Not found\n", status_code=404, media_type="text/plain")


@router.get("/style.css", name="brand_style")
def style(company: str, state: State) -> Response:
    """The brand colour (validated ``#RRGGBB``) for the bundled style sheet to use."""
    if company != state.ws.config.company.id:
        return _unknown()
    color = state.ws.config.company.branding.color
    return Response(
        f":root {{ --brand: {color}; }}\n",
        media_type="text/css",
        headers={"Cache-Control": CACHE},
    )


@router.get("/logo", name="brand_logo")
def logo(company: str, state: State) -> Response:
    """``branding.logo_file``, checked to be an image of its type inside the workspace."""
    if company != state.ws.config.company.id:
        return _unknown()
    found = workspace_logo(state.ws.root, state.ws.config.company.branding.logo_file)
    if found is None:
        return Response("no logo\n", status_code=404, media_type="text/plain")
    return Response(found.data, media_type=found.content_type, headers={"Cache-Control": CACHE})
