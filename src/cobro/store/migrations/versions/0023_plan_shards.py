"""A company's day planned in shards on the workers: ``plan_shards`` (one row per range
of debtors, planned once), and on ``daily_runs`` what the start of the day recorded for
every shard (``covered_before``, ``go_live_on``) and did (accounts released, promises
settled)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-14 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cobro.store.tables import UTCDateTime

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ("unblocked", "promises_kept", "promises_broken")
SHARD_COUNTS = ("planned", "items", "candidates", "held", "deferred")


def upgrade() -> None:
    with op.batch_alter_table("daily_runs") as batch:
        batch.add_column(sa.Column("started_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("covered_before", sa.Date(), nullable=True))
        batch.add_column(sa.Column("go_live_on", sa.Date(), nullable=True))
        for name in COUNTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "plan_shards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("run_on", sa.Date(), nullable=False),
        sa.Column("first_customer_id", sa.Integer(), nullable=False),
        sa.Column("last_customer_id", sa.Integer(), nullable=True),
        sa.Column("planned_at", UTCDateTime(), nullable=True),
        *(
            sa.Column(name, sa.Integer(), nullable=False, server_default="0")
            for name in SHARD_COUNTS
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name="fk_plan_shards_company_id_companies"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_plan_shards"),
        sa.UniqueConstraint(
            "company_id", "run_on", "first_customer_id", name="uq_plan_shards_first"
        ),
    )


def downgrade() -> None:
    op.drop_table("plan_shards")
    with op.batch_alter_table("daily_runs") as batch:
        for name in ("started_at", "covered_before", "go_live_on", *COUNTS):
            batch.drop_column(name)
