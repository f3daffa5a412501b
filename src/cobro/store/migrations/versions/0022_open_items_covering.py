"""The two partial indexes of open receivables hold every column the day's planning
reads of them: ix_receivables_open_due (company, due date, then debtor and balance) finds
the debtors an item of which reaches a phase, ix_receivables_open_customer (company,
debtor, balance, then due date) gives each candidate's debt, both without reading the
table

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-13 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("balance_minor > 0")


def _replace(name: str, columns: list[str]) -> None:
    with op.batch_alter_table("receivables", schema=None) as batch_op:
        batch_op.drop_index(name)
        batch_op.create_index(name, columns, unique=False, sqlite_where=OPEN, postgresql_where=OPEN)


def upgrade() -> None:
    _replace("ix_receivables_open_due", ["company_id", "due_on", "customer_id", "balance_minor"])
    _replace(
        "ix_receivables_open_customer", ["company_id", "customer_id", "balance_minor", "due_on"]
    )


def downgrade() -> None:
    _replace("ix_receivables_open_customer", ["company_id", "customer_id", "balance_minor"])
    _replace("ix_receivables_open_due", ["company_id", "due_on"])
