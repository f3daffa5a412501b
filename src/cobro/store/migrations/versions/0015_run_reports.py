"""runs: the report of a finished run, why one stopped, runs by company and date; claims
(outbox rows) by company in the order of their ids, all and by status

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("report", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("error", sa.String(length=2000), nullable=True))
    op.create_index("ix_runs_company_id_run_on", "runs", ["company_id", "run_on"])
    op.create_index("ix_outbox_company_id_id", "outbox", ["company_id", "id"])
    op.create_index("ix_outbox_company_id_status_id", "outbox", ["company_id", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_company_id_status_id", table_name="outbox")
    op.drop_index("ix_outbox_company_id_id", table_name="outbox")
    op.drop_index("ix_runs_company_id_run_on", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("error")
        batch.drop_column("report")
