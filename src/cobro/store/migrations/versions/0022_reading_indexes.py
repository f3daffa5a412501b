"""Indexes for reading: the two partial indexes of open receivables hold every column
the day's planning reads of them (ix_receivables_open_due: company, due date, then debtor
and balance, to find the debtors an item of which reaches a phase; ix_receivables_open_customer:
company, debtor, balance, then due date, for each candidate's debt), and
ix_customers_company_id_id gives a company's debtors in the order of their ids (the
API's list)

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
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_company_id_id", ["company_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_company_id_id")
    _replace("ix_receivables_open_customer", ["company_id", "customer_id", "balance_minor"])
    _replace("ix_receivables_open_due", ["company_id", "due_on"])
