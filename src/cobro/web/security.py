"""Headers every response carries: what the browser may load and embed, and what it keeps."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_STORE_PREFIXES = ("/portal/", "/api/", "/dashboard")  # debtors' data; a portal URL is a secret


def content_security_policy(image_urls: list[str | None]) -> str:
    """Only this site's styles and forms, no scripts at all, images from this site and
    from the hosts of ``image_urls`` (a logo hosted elsewhere)."""
    hosts = sorted(
        {
            f"{parts.scheme}://{parts.netloc}"
            for url in image_urls
            if url and (parts := urlsplit(url)).scheme in ("http", "https") and parts.netloc
        }
    )
    return "; ".join(
        [
            "default-src 'self'",
            "img-src " + " ".join(["'self'", *hosts]),
            "style-src 'self'",
            "script-src 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """ASGI middleware: the security headers on every response; ``no-store`` on portal
    pages (a link's token is in their URL and their data is one debtor's)."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": csp,
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Opener-Policy": "same-origin",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = str(scope["path"]).startswith(NO_STORE_PREFIXES)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:  # a page may set its own (the API docs' CSP)
                        headers[name] = value
                if no_store:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # A fault of Cobro's: a plain 500 with these headers too, never a traceback;
            # the exception goes on to the server's log.
            if not started:
                fault = PlainTextResponse("Internal Server Error\n", status_code=500)
                await fault(scope, receive, send_with_headers)
            raise
