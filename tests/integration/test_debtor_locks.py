"""The locks a dispatcher's claim takes on its debtors (PostgreSQL): a bounded number of
advisory locks whatever the batch, held by the claim's transaction, and waited for by
another claim of a debtor in the same bucket."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from cobro.engine.leases import lock_debtors
from cobro.workspace import Workspace

ADVISORY = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
)


def test_a_batch_of_500_debtors_takes_at_most_64_locks_until_its_claim_ends(
    ws: Workspace, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("advisory locks: PostgreSQL (SQLite serialises its writers)")
    with ws.engine.begin() as conn:
        lock_debtors(conn, range(1, 501))
        assert conn.execute(ADVISORY).scalar_one() == 64
        lock_debtors(conn, [7, 71])  # the same buckets again: nothing more
        assert conn.execute(ADVISORY).scalar_one() == 64
    with ws.engine.connect() as conn:
        assert conn.execute(ADVISORY).scalar_one() == 0  # gone with the transaction


def test_a_claim_of_a_debtor_in_a_locked_bucket_waits_for_the_first_to_end(
    ws: Workspace, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("advisory locks: PostgreSQL (SQLite serialises its writers)")
    second_locked = threading.Event()

    def second() -> None:
        with ws.engine.begin() as conn:
            lock_debtors(conn, [3 + 64])  # another debtor, the same bucket as 3
            second_locked.set()

    with ws.engine.begin() as conn:
        lock_debtors(conn, [3])
        waiting = threading.Thread(target=second)
        waiting.start()
        # While the first claim holds the bucket, the second is seen waiting for it.
        with ws.engine.connect() as other:
            waits = text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            while other.execute(waits).scalar_one() == 0:
                assert waiting.is_alive() and not second_locked.is_set()
        assert not second_locked.is_set()
    waiting.join(timeout=30)
    assert second_locked.is_set()
