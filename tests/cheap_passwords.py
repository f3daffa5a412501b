"""Staff passwords hashed at the least cost argon2 takes (docs/dashboard.md): the suite
hashes and checks hundreds of them, each about 0.1 s at the default cost. tests/conftest.py
puts these in the environment before any test, so that every process the tests start
inherits them (and tests/e2e/cli.py's own environment has them);
tests/unit/test_password_cost.py checks the default cost itself."""

from __future__ import annotations

CHEAP = {
    "COBRO_PASSWORD_TIME_COST": "1",
    "COBRO_PASSWORD_MEMORY_KIB": "8",
    "COBRO_PASSWORD_PARALLELISM": "1",
}
