"""customer_terms: the words the dashboard's debtor search finds a debtor by (name words,
id, email, phone digits), filled from the debtors there are; data_version: a counter every
writing transaction moves on (what the dashboard's overview is kept by)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-11 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _terms(name: str, external_id: str, email: str | None, phone: str | None) -> set[str]:
    """As ``cobro.engine.debtor_terms.terms_of`` was written with this revision."""
    found = {w[:320] for w in name.lower().split()}
    found.add(external_id.lower()[:320])
    if email:
        found.add(email.lower()[:320])
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    if phone and digits:
        found.add("#" + digits)
        if phone.strip().startswith("+"):
            import phonenumbers

            try:
                national = phonenumbers.parse(phone, None).national_number
            except phonenumbers.NumberParseException:
                national = None
            if national:
                found.add("#" + str(national))
    found.discard("")
    return found


def upgrade() -> None:
    terms = op.create_table(
        "customer_terms",
        sa.Column("company_id", sa.Integer(), sa.ForeignKey("companies.id"), nullable=False),
        sa.Column(
            "term",
            sa.String(length=320).with_variant(sa.String(length=320, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id"), nullable=False),
        sa.PrimaryKeyConstraint("company_id", "term", "customer_id"),
    )
    op.create_index("ix_customer_terms_customer_id_term", "customer_terms", ["customer_id", "term"])
    version = op.create_table(
        "data_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])
    conn = op.get_bind()
    customers = sa.table(
        "customers",
        sa.column("id", sa.Integer()),
        sa.column("company_id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("external_id", sa.String()),
        sa.column("email", sa.String()),
        sa.column("phone", sa.String()),
    )
    rows: list[dict[str, object]] = []
    for row in conn.execute(sa.select(customers).order_by(customers.c.id)).all():
        for term in _terms(row.name, row.external_id, row.email, row.phone):
            rows.append({"company_id": row.company_id, "term": term, "customer_id": row.id})
        if len(rows) >= 10_000:
            conn.execute(sa.insert(terms), rows)
            rows = []
    if rows:
        conn.execute(sa.insert(terms), rows)


def downgrade() -> None:
    op.drop_table("data_version")
    op.drop_index("ix_customer_terms_customer_id_term", table_name="customer_terms")
    op.drop_table("customer_terms")
