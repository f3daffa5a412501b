"""debtor-level escalation: dunning levels and the go-live date

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cobro.store.tables import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dunning_levels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=40), nullable=False),
        sa.Column("phase_key", sa.String(length=40), nullable=True),
        sa.Column("reached_on", sa.Date(), nullable=True),
        sa.Column("repeats", sa.Integer(), server_default="0", nullable=False),
        sa.Column("review_on", sa.Date(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_dunning_levels_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_dunning_levels_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dunning_levels")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_dunning_levels_customer_id")),
    )
    op.create_index(
        op.f("ix_dunning_levels_company_id_review_on"),
        "dunning_levels",
        ["company_id", "review_on"],
        unique=False,
    )
    with op.batch_alter_table("companies") as batch:
        batch.add_column(sa.Column("go_live_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("companies") as batch:
        batch.drop_column("go_live_on")
    op.drop_index(op.f("ix_dunning_levels_company_id_review_on"), table_name="dunning_levels")
    op.drop_table("dunning_levels")
