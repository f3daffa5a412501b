"""import: unusable addresses kept, credit notes applied, payments reversed

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-04 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("customers", "contacts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("invalid_email", sa.String(length=320), nullable=True))
            batch_op.add_column(sa.Column("invalid_phone", sa.String(length=100), nullable=True))
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reverses_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_payments_reverses_id_payments"), "payments", ["reverses_id"], ["id"]
        )
        batch_op.create_unique_constraint(batch_op.f("uq_payments_reverses_id"), ["reverses_id"])
    op.create_table(
        "credit_applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("credit_note_id", sa.Integer(), nullable=False),
        sa.Column("receivable_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["receivables.id"],
            name=op.f("fk_credit_applications_credit_note_id_receivables"),
        ),
        sa.ForeignKeyConstraint(
            ["receivable_id"],
            ["receivables.id"],
            name=op.f("fk_credit_applications_receivable_id_receivables"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_applications")),
    )
    with op.batch_alter_table("credit_applications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_applications_credit_note_id"), ["credit_note_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_applications_receivable_id"), ["receivable_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_applications_receivable_id"))
        batch_op.drop_index(batch_op.f("ix_credit_applications_credit_note_id"))
    op.drop_table("credit_applications")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_payments_reverses_id"), type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_payments_reverses_id_payments"), type_="foreignkey")
        batch_op.drop_column("reverses_id")
    for table in ("contacts", "customers"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("invalid_phone")
            batch_op.drop_column("invalid_email")
