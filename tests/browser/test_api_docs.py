"""The API's docs page in a real browser: Swagger UI, served by Cobro under its own
content security policy, renders the live OpenAPI document with no error and nothing
loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2e.cli import run_cobro

from .conftest import screenshot, serve, stop


def test_the_api_docs_page_renders_the_live_document(tmp_path: Path, browser: Any) -> None:
    ws = tmp_path / "acme"
    run_cobro(tmp_path, "init", str(ws))
    served = serve(ws)
    try:
        page = browser.new_page()
        errors: list[str] = []
        requested: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requested.append(r.url))
        page.on(
            "response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None
        )
        page.goto(f"{served.url}/api/v1/docs")
        page.wait_for_selector(".swagger-ui .info .title")
        page.wait_for_selector(".opblock-tag")
        title = page.inner_text(".swagger-ui .info .title")
        operations = page.locator(".opblock").count()
        screenshot(page, "api-docs")
        page.close()
    finally:
        stop(served)

    assert title.startswith("Cobro API")
    assert operations >= 4
    assert errors == []
    assert all(url.startswith(served.url) for url in requested), requested
