"""A dispatcher reads its batches in order from indexes, never sorting every row due:
the outbox's index by company, status and due instant gets the row's id as well (the
tie-break of the day's claims, all due at one instant), and so does the index of webhook
deliveries; a third one, of the same columns, holds the rows that no day's run planned
(``run_id IS NULL``: an event's notice, a resend, a pay link asked for on a call; webhook
deliveries aside), which go ahead of the day's claims

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

PROMPT = sa.text("run_id IS NULL AND step NOT LIKE 'webhook/%'")
WEBHOOKS = sa.text("step LIKE 'webhook/%'")
DUE = ["company_id", "status", "next_attempt_at"]


def _webhooks(columns: list[str]) -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_webhooks")
        batch_op.create_index(
            "ix_outbox_webhooks",
            columns,
            unique=False,
            sqlite_where=WEBHOOKS,
            postgresql_where=WEBHOOKS,
        )


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_company_id_status_next_attempt_at")
        batch_op.create_index(
            "ix_outbox_company_id_status_next_attempt_at_id", [*DUE, "id"], unique=False
        )
        batch_op.create_index(
            "ix_outbox_prompt",
            [*DUE, "id"],
            unique=False,
            sqlite_where=PROMPT,
            postgresql_where=PROMPT,
        )
    _webhooks([*DUE, "id"])


def downgrade() -> None:
    _webhooks(DUE)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_prompt")
        batch_op.drop_index("ix_outbox_company_id_status_next_attempt_at_id")
        batch_op.create_index("ix_outbox_company_id_status_next_attempt_at", DUE, unique=False)
