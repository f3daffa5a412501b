"""tasks: the staff user each task is given to (the dashboard's task board); deliveries:
an index by company and lower-case recipient (the dashboard's message log)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-10 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("assignee", sa.String(length=320), nullable=True))
    op.create_index(
        "ix_tasks_company_id_assignee_status_due_at",
        "tasks",
        ["company_id", "assignee", "status", "due_at"],
    )
    op.create_index(
        "ix_deliveries_company_id_recipient",
        "deliveries",
        ["company_id", sa.text("lower(recipient)")],
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_company_id_recipient", table_name="deliveries")
    op.drop_index("ix_tasks_company_id_assignee_status_due_at", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("assignee")
