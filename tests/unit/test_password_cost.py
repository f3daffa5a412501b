"""The cost staff passwords are hashed at: argon2-cffi's default unless the environment
says otherwise (the suite lowers it, tests/cheap_passwords.py), a bad value named, and a
hash made at another cost made again at the next login."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from cobro.engine import users
from cobro.store import tables as t
from cobro.workspace import Workspace

VARIABLES = [variable for variable, *_ in users.COST_VARIABLES.values()]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def cost(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The cost variables unset (the defaults), and the hasher made again from them."""
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    users._hasher.cache_clear()
    yield monkeypatch
    users._hasher.cache_clear()


def params(stored: str) -> str:
    return stored.split("$")[3]


def test_without_the_variables_a_hash_costs_argon2s_default(cost: pytest.MonkeyPatch) -> None:
    stored = users._hasher().hash(PASSWORD)
    assert stored.startswith("$argon2id$v=19$")
    assert params(stored) == "m=65536,t=3,p=4"
    assert not users.lowered_cost()


def test_the_variables_set_the_cost_and_lowering_it_is_told(cost: pytest.MonkeyPatch) -> None:
    cost.setenv("COBRO_PASSWORD_TIME_COST", "2")
    cost.setenv("COBRO_PASSWORD_MEMORY_KIB", "1024")
    cost.setenv("COBRO_PASSWORD_PARALLELISM", "2")
    assert users.password_cost() == {"time_cost": 2, "memory_cost": 1024, "parallelism": 2}
    assert users.lowered_cost()
    assert params(users._hasher().hash(PASSWORD)) == "m=1024,t=2,p=2"
    cost.setenv("COBRO_PASSWORD_TIME_COST", "4")
    cost.setenv("COBRO_PASSWORD_MEMORY_KIB", "131072")
    cost.setenv("COBRO_PASSWORD_PARALLELISM", "4")
    assert not users.lowered_cost()  # raised, not lowered


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("COBRO_PASSWORD_TIME_COST", "abc", "COBRO_PASSWORD_TIME_COST: 'abc' is not a whole"),
        ("COBRO_PASSWORD_TIME_COST", "0", "from 1 to 64"),
        ("COBRO_PASSWORD_MEMORY_KIB", "4", "COBRO_PASSWORD_MEMORY_KIB: '4' is not a whole"),
        ("COBRO_PASSWORD_MEMORY_KIB", "9999999999", "from 8 to 4194304"),
        ("COBRO_PASSWORD_PARALLELISM", "1.5", "COBRO_PASSWORD_PARALLELISM: '1.5'"),
        ("COBRO_PASSWORD_PARALLELISM", "8", "less than 8 KiB a lane (64 with"),
    ],
)
def test_a_bad_value_is_named(
    cost: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    cost.setenv("COBRO_PASSWORD_MEMORY_KIB", "32")
    cost.setenv(variable, value)
    with pytest.raises(users.UserError) as raised:
        users.password_cost()
    assert said in str(raised.value)
    with pytest.raises(users.UserError):
        users._hasher()


def stored_hash(ws: Workspace, user_id: int) -> str:
    with ws.engine.connect() as conn:
        u = t.staff_users.c
        return str(conn.execute(select(u.password_hash).where(u.id == user_id)).scalar_one())


def set_cost(cost: pytest.MonkeyPatch, time_cost: int, memory_kib: int, lanes: int) -> None:
    cost.setenv("COBRO_PASSWORD_TIME_COST", str(time_cost))
    cost.setenv("COBRO_PASSWORD_MEMORY_KIB", str(memory_kib))
    cost.setenv("COBRO_PASSWORD_PARALLELISM", str(lanes))
    users._hasher.cache_clear()


def test_a_hash_made_at_less_than_todays_cost_is_raised_never_lowered(
    cost: pytest.MonkeyPatch, workspace: Workspace
) -> None:
    set_cost(cost, 1, 64, 1)
    with workspace.engine.begin() as conn:
        user = users.add_user(conn, workspace.company_id, "ana@example.com", "admin", PASSWORD, NOW)
    made = stored_hash(workspace, user.id)
    assert params(made) == "m=64,t=1,p=1"
    set_cost(cost, 2, 128, 1)  # the cost raised since
    assert not users.raise_hash_cost(workspace.engine, user.id, "not the password")
    assert stored_hash(workspace, user.id) == made
    assert users.raise_hash_cost(workspace.engine, user.id, PASSWORD)
    raised = stored_hash(workspace, user.id)
    assert params(raised) == "m=128,t=2,p=1"
    assert PasswordHasher().verify(raised, PASSWORD)
    assert not users.raise_hash_cost(workspace.engine, user.id, PASSWORD)  # at today's
    set_cost(cost, 1, 64, 1)  # lowered again: a stronger hash is kept as it is
    assert not users.raise_hash_cost(workspace.engine, user.id, PASSWORD)
    assert stored_hash(workspace, user.id) == raised
    set_cost(cost, 3, 64, 1)  # more passes but less memory than the hash: kept too
    assert not users.raise_hash_cost(workspace.engine, user.id, PASSWORD)
    assert stored_hash(workspace, user.id) == raised
