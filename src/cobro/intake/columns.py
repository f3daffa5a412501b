"""The record kinds an import accepts and the columns of each (shared by the importer and the
configuration of column mappings)."""

from __future__ import annotations

KINDS = ("customers", "contacts", "receivables", "payments")

CUSTOMER_KINDS = ("person", "business")
CREDIT_NOTE = "credit_note"
RECEIVABLE_KINDS = ("invoice", "instalment", CREDIT_NOTE)
CONTACT_ROLES = ("billing", "primary", "sales_rep", "account_manager", "banking")
ATTR_PREFIX = "attr_"

# Columns each kind accepts, and whether the column is required.
COLUMNS: dict[str, dict[str, bool]] = {
    "customers": {
        "external_id": True,
        "name": True,
        "kind": False,
        "group": False,
        "language": False,
        "timezone": False,  # IANA name (Europe/Madrid); default: the company's
        "email": False,
        "phone": False,
        "tags": False,
        "policy": False,
        "optouts": False,  # channels the debtor opted out of: email, sms, push
    },
    "contacts": {
        "external_id": True,
        "customer": True,
        "name": True,
        "email": False,
        "phone": False,
        "roles": False,
        "language": False,
    },
    "receivables": {
        "external_id": True,
        "customer": True,
        "kind": False,
        "number": False,
        "invoice": False,
        "issued_on": False,
        "due_on": True,
        "currency": False,
        "amount": True,
        "balance": False,
        "description": False,
    },
    "payments": {
        "external_id": True,
        "customer": True,
        "receivable": False,
        "paid_on": True,
        "amount": True,
        "currency": False,
        "reverses": False,
    },
}


def is_column(kind: str, name: str) -> bool:
    """Whether ``name`` is a column of ``kind`` (a customer's ``attr_NAME`` included)."""
    if name in COLUMNS[kind]:
        return True
    return kind == "customers" and name.startswith(ATTR_PREFIX) and len(name) > len(ATTR_PREFIX)
