"""The web layer: the app factory (``cobro.web.app.create_app``), the debtor portal and the
pages, styles and headers they share. Nothing is built at import time."""
