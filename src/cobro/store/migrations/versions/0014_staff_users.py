"""dashboard: staff users, their sessions, notes on debtors; indexes for search and reports

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cobro.store.tables import UTCDateTime

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("password_changed_at", UTCDateTime(), nullable=False),
        sa.Column("last_login_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name="fk_staff_users_company_id_companies"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_staff_users"),
        sa.UniqueConstraint("company_id", "email", name="uq_staff_users_company_id_email"),
    )
    op.create_index("ix_staff_users_email", "staff_users", ["email"])
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name="fk_staff_sessions_company_id_companies"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["staff_users.id"], name="fk_staff_sessions_user_id_staff_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_staff_sessions"),
        sa.UniqueConstraint("digest", name="uq_staff_sessions_digest"),
    )
    op.create_index("ix_staff_sessions_user_id", "staff_sessions", ["user_id"])
    op.create_table(
        "debtor_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=320), nullable=False),
        sa.Column("text", sa.String(length=2000), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name="fk_debtor_notes_company_id_companies"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_debtor_notes_customer_id_customers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_debtor_notes"),
    )
    op.create_index("ix_debtor_notes_customer_id", "debtor_notes", ["customer_id"])
    op.create_index("ix_customers_company_id_name", "customers", ["company_id", "name", "id"])
    op.create_index("ix_customers_company_id_email", "customers", ["company_id", "email"])
    op.create_index("ix_customers_company_id_phone", "customers", ["company_id", "phone"])
    op.create_index(
        "ix_receivables_issue_day",
        "receivables",
        ["company_id", sa.text("coalesce(issued_on, due_on)")],
    )
    op.create_index("ix_payments_company_id_paid_on", "payments", ["company_id", "paid_on"])
    op.create_index("ix_deliveries_company_id_at", "deliveries", ["company_id", "at"])
    op.create_index("ix_claim_views_company_id_at", "claim_views", ["company_id", "at"])


def downgrade() -> None:
    for index, table in (
        ("ix_claim_views_company_id_at", "claim_views"),
        ("ix_deliveries_company_id_at", "deliveries"),
        ("ix_payments_company_id_paid_on", "payments"),
        ("ix_receivables_issue_day", "receivables"),
        ("ix_customers_company_id_phone", "customers"),
        ("ix_customers_company_id_email", "customers"),
        ("ix_customers_company_id_name", "customers"),
    ):
        op.drop_index(index, table_name=table)
    op.drop_table("debtor_notes")
    op.drop_table("staff_sessions")
    op.drop_table("staff_users")
