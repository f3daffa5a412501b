"""An index of the outbox rows that no day's run planned (``run_id IS NULL``: an event's
notice, a resend, a pay link asked for on a call), by company, status and due instant: a
dispatcher finds those due without reading past the day's claims, and sends them first

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-18 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROMPT = sa.text("run_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_prompt",
            ["company_id", "status", "next_attempt_at"],
            unique=False,
            sqlite_where=PROMPT,
            postgresql_where=PROMPT,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_prompt")
