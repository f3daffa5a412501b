"""ix_receivables_open_customer: the open receivables by company, debtor and balance
(partial, as ix_receivables_open_due), so that the items a claim or a debt notice lists
are read from the index alone

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-12 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("receivables", schema=None) as batch_op:
        batch_op.create_index(
            "ix_receivables_open_customer",
            ["company_id", "customer_id", "balance_minor"],
            unique=False,
            sqlite_where=sa.text("balance_minor > 0"),
            postgresql_where=sa.text("balance_minor > 0"),
        )


def downgrade() -> None:
    with op.batch_alter_table("receivables", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_receivables_open_customer",
            sqlite_where=sa.text("balance_minor > 0"),
            postgresql_where=sa.text("balance_minor > 0"),
        )
