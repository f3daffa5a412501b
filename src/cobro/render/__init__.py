"""Rendering: sandboxed templates, locale formatting and MIME messages."""
