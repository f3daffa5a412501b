"""Settings of ``cobro worker`` and ``cobro scheduler``: from the environment, and a bad
value refused in one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cobro.config.settings import WorkerSettings


def test_settings_come_from_cobro_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COBRO_BROKER_URL", "redis://cache:6379/2")
    monkeypatch.setenv("COBRO_RATE_LIMITS", '{"email": 50, "sms": 2.5}')
    monkeypatch.setenv("COBRO_SHARD_DEBTORS", "40")
    monkeypatch.delenv("COBRO_PLAN_SHARD_DEBTORS", raising=False)
    settings = WorkerSettings()
    assert settings.broker_url == "redis://cache:6379/2"
    assert settings.rate_limits == {"email": 50.0, "sms": 2.5}
    assert settings.shard_debtors == 40
    assert settings.plan_shard_debtors == 50_000  # a day's plan: shards of this many
    monkeypatch.setenv("COBRO_PLAN_SHARD_DEBTORS", "1000")
    assert WorkerSettings().plan_shard_debtors == 1000
    assert settings.queue == "cobro"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("COBRO_TICK_SECONDS", "0", "COBRO_TICK_SECONDS: Input should be greater than 0"),
        (
            "COBRO_PLAN_SHARD_DEBTORS",
            "0",
            "COBRO_PLAN_SHARD_DEBTORS: Input should be greater than or equal to 1",
        ),
        (
            "COBRO_RATE_LIMITS",
            "email=50",
            'COBRO_RATE_LIMITS: not JSON (write it as {"email": 50, "sms": 10})',
        ),
    ],
)
def test_a_bad_value_stops_the_worker_with_one_line_naming_it(
    tmp_path: Path, variable: str, value: str, says: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRO_")}
    env[variable] = value
    done = subprocess.run(
        [sys.executable, "-m", "cobro", "-w", str(tmp_path), "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        says,
        "error: bad settings in the environment; nothing was started",
    ]
