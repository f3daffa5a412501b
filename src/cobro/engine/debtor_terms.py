"""The words the dashboard's debtor search finds a debtor by (``customer_terms``).

Each debtor is listed under: every word of its name, its id, its email address (lower
case), and its phone's digits, with and without the country code (marked ``#``). A
search word matches a debtor when one of its terms starts with it, which a range of the
table's primary key answers at any size; the importer keeps the terms of the debtors it
writes (``index_debtors``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, insert, select

from cobro.store import tables as t

PHONE = "#"  # the mark of a phone's digits among the terms
MAX_TERM = 320
LAST = "\U0010ffff"  # sorts after every character (byte by byte, as the index does)


def words(text: str) -> list[str]:
    """The lower-case words of ``text`` (split at white space)."""
    return [w[:MAX_TERM] for w in text.lower().split()]


def phone_terms(phone: str | None) -> set[str]:
    """A phone's digits, and, for a number written with its country code, its national
    number's digits (``+34 611 999 888``: ``#34611999888`` and ``#611999888``)."""
    if not phone:
        return set()
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not digits:
        return set()
    found = {PHONE + digits}
    if phone.strip().startswith("+"):
        import phonenumbers

        try:
            national = phonenumbers.parse(phone, None).national_number
        except phonenumbers.NumberParseException:
            national = None
        if national:
            found.add(PHONE + str(national))
    return found


def terms_of(name: str, external_id: str, email: str | None, phone: str | None) -> set[str]:
    """Every term a debtor is found by."""
    found = set(words(name))
    found.add(external_id.lower()[:MAX_TERM])
    if email:
        found.add(email.lower()[:MAX_TERM])
    found |= phone_terms(phone)
    found.discard("")
    return found


def index_debtors(conn: Connection, company_id: int, ids: Iterable[int] | None = None) -> int:
    """Write again the terms of the company's debtors ``ids`` (None: all of them), from
    their rows as they are now. Returns the number of terms written."""
    c, ct = t.customers.c, t.customer_terms.c
    chosen = None if ids is None else sorted(set(ids))
    if chosen is not None and not chosen:
        return 0
    q = select(c.id, c.name, c.external_id, c.email, c.phone).where(c.company_id == company_id)
    gone = delete(t.customer_terms).where(ct.company_id == company_id)
    written = 0
    chunks: list[list[int] | None] = (
        [None] if chosen is None else [chosen[i : i + 500] for i in range(0, len(chosen), 500)]
    )
    for chunk in chunks:
        rows = conn.execute(q if chunk is None else q.where(c.id.in_(chunk))).all()
        conn.execute(gone if chunk is None else gone.where(ct.customer_id.in_(chunk)))
        values = [
            {"company_id": company_id, "term": term, "customer_id": int(row.id)}
            for row in rows
            for term in terms_of(str(row.name), str(row.external_id), row.email, row.phone)
        ]
        for i in range(0, len(values), 10_000):
            conn.execute(insert(t.customer_terms), values[i : i + 10_000])
        written += len(values)
    return written
