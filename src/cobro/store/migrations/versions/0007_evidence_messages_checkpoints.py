"""messages as sent on deliveries; signed evidence checkpoints

Revision ID: 0007
Revises: 0009
Create Date: 2026-12-04 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cobro.store.tables import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_zlib", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("message_sha256", sa.String(length=64), nullable=True))
    op.create_table(
        "evidence_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.String(length=64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_evidence_checkpoints_company_id_companies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_checkpoints")),
        sa.UniqueConstraint(
            "company_id", "seq", name=op.f("uq_evidence_checkpoints_company_id_seq")
        ),
    )


def downgrade() -> None:
    op.drop_table("evidence_checkpoints")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("message_sha256")
        batch_op.drop_column("message_zlib")
