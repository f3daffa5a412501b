"""The index of blocked debtors holds the blocked flag beside the company: with the company
alone, SQLite took ix_customers_company_id_id just as well and read every debtor of the
company to release the paid blocks of the day (200,000 of them at the largest)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-15 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _replace(columns: list[str]) -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_blocked")
        batch_op.create_index(
            "ix_customers_blocked",
            columns,
            unique=False,
            sqlite_where=sa.text("blocked = 1"),
            postgresql_where=sa.text("blocked"),
        )


def upgrade() -> None:
    _replace(["company_id", "blocked"])


def downgrade() -> None:
    _replace(["company_id"])
