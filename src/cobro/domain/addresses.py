"""Email address syntax, as email-validator checks it, without loading it for plain addresses.

email-validator compiles regular expressions over the whole Unicode range when it is
imported (about a third of the instructions of opening a workspace). Most addresses a
configuration or an import holds are plain ASCII (``name@example.com``), and for those
its rules come down to a few exact checks: :func:`plain_address` makes them and gives
the address email-validator would give. Anything else (non-ASCII text, quoting, display
names, Punycode or ``--`` labels, reserved names, lengths at the limits) goes to
email-validator itself, so that what is accepted or refused, and the message of a
refusal, are its own. ``tests/unit/test_addresses.py`` checks the two against each other.
"""

from __future__ import annotations

import re

# RFC 5322 dot-atom: atext runs separated by single dots (email-validator's DOT_ATOM_TEXT).
_LOCAL = re.compile(r"[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+)*")
# Lowercase host labels, at least two, no hyphen at either end of a label, the last one
# ending with a letter (every top-level domain does).
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:[a-z0-9][a-z0-9-]*)?[a-z]")
# RFC 2142's role mailboxes, which email-validator gives in lowercase.
_CASE_INSENSITIVE = frozenset(
    {
        "info",
        "marketing",
        "sales",
        "support",
        "abuse",
        "noc",
        "security",
        "postmaster",
        "hostmaster",
        "usenet",
        "news",
        "webmaster",
        "www",
        "uucp",
        "ftp",
    }
)
# Special-use and reserved names, refused for email (RFC 6761 and others).
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")
_MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3, in octets
_MAX_DOMAIN = 253
_MAX_LABEL = 63


def plain_address(value: str) -> str | None:
    """The address as ``validate_email(value, check_deliverability=False,
    allow_smtputf8=False).ascii_email`` gives it, when ``value`` is a plain ASCII address
    that it certainly accepts; None when email-validator must decide."""
    if len(value) > _MAX_ADDRESS or not value.isascii() or value.count("@") != 1:
        return None
    local, _, domain = value.partition("@")
    domain = domain.lower()
    if (
        _LOCAL.fullmatch(local) is None
        or _DOMAIN.fullmatch(domain) is None
        or len(domain) > _MAX_DOMAIN
        or "--" in domain  # Punycode (xn--) and the labels RFC 5890 reserves
        or any(len(label) > _MAX_LABEL for label in domain.split("."))
        or any(domain == name or domain.endswith("." + name) for name in _SPECIAL_USE)
    ):
        return None
    if local.lower() in _CASE_INSENSITIVE:
        local = local.lower()
    return f"{local}@{domain}"


def ascii_address(value: str, refusal: str) -> str:
    """``value`` as email-validator normalizes it (ASCII only, no deliverability check);
    ``ValueError("<refusal>: <email-validator's reason>")`` when it is not an address."""
    plain = plain_address(value)
    if plain is not None:
        return plain
    from email_validator import EmailNotValidError, validate_email

    try:
        found = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{refusal}: {exc}") from exc
    return str(found.ascii_email)
