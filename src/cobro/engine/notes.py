"""Notes staff write on a debtor's account (a call, what was agreed): kept with their
author and time, shown on the account, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from cobro.errors import CobroError
from cobro.store import tables as t

MAX_NOTE = 2000


@dataclass(frozen=True)
class Note:
    id: int
    author: str
    text: str
    created_at: datetime


def add_note(
    conn: Connection, company_id: int, customer_id: int, author: str, text: str, at: datetime
) -> int:
    """A note on the debtor's account; ``CobroError`` when it is empty or too long."""
    text = text.strip()
    if not text:
        raise CobroError("a note needs some text")
    if len(text) > MAX_NOTE:
        raise CobroError(f"a note has at most {MAX_NOTE} characters")
    n = t.debtor_notes.c
    return int(
        conn.execute(
            insert(t.debtor_notes)
            .values(
                company_id=company_id,
                customer_id=customer_id,
                author=author,
                text=text,
                created_at=at,
            )
            .returning(n.id)
        ).scalar_one()
    )


def list_notes(conn: Connection, company_id: int, customer_id: int) -> list[Note]:
    n = t.debtor_notes.c
    return [
        Note(int(row.id), str(row.author), str(row.text), row.created_at)
        for row in conn.execute(
            select(n.id, n.author, n.text, n.created_at)
            .where(n.company_id == company_id, n.customer_id == customer_id)
            .order_by(n.created_at.desc(), n.id.desc())
        )
    ]
