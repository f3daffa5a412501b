"""The two indexes of open receivables hold each receivable's currency as well: a debt
notice's or a claim's items are counted and summed per currency from
ix_receivables_open_customer alone (the simulation's totals, ``cobro.engine.claim_items``),
not from the table; ix_receivables_open_due gets it too, so that SQLite, which prefers the
narrower of two covering indexes, still reads a debt notice's items debtor after debtor
from ix_receivables_open_customer

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-17 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("balance_minor > 0")
BEFORE = {
    "ix_receivables_open_due": ["company_id", "due_on", "customer_id", "balance_minor"],
    "ix_receivables_open_customer": ["company_id", "customer_id", "balance_minor", "due_on"],
}


def _replace(extra: list[str]) -> None:
    include = ["id"] if op.get_bind().dialect.name == "postgresql" else []
    with op.batch_alter_table("receivables", schema=None) as batch_op:
        for name, columns in BEFORE.items():
            batch_op.drop_index(name)
            batch_op.create_index(
                name,
                [*columns, *extra],
                unique=False,
                sqlite_where=OPEN,
                postgresql_where=OPEN,
                postgresql_include=include,
            )


def upgrade() -> None:
    _replace(["currency"])


def downgrade() -> None:
    _replace([])
