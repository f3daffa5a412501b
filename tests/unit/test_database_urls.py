"""Database URLs: what Cobro runs on, refused clearly otherwise, passwords never shown;
the newest migration known without loading Alembic."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from cobro.errors import DatabaseUnavailable
from cobro.store.db import head_revision, normalise_url, shown_url


def test_the_head_read_from_the_migration_files_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", "cobro.store:migrations")
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u:pw@h:5433/db", "postgresql+psycopg://u:pw@h:5433/db"),
        ("sqlite:///cobro.db", "sqlite:///cobro.db"),
        ("sqlite+pysqlite:////tmp/x.db", "sqlite+pysqlite:////tmp/x.db"),
    ],
)
def test_supported_urls(url: str, normal: str) -> None:
    assert normalise_url(url) == normal


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("cobro.db", "'cobro.db' is not a URL"),
        ("mysql://app:pw@h/db", "'mysql://app:***@h/db': Cobro does not run on 'mysql'"),
        ("postgresql+psycopg2://app@h/db", "Cobro does not run on 'postgresql+psycopg2'"),
    ],
)
def test_other_urls_are_refused_with_what_to_write(url: str, says: str) -> None:
    with pytest.raises(DatabaseUnavailable) as exc:
        normalise_url(url)
    assert says in str(exc.value)
    assert "sqlite:///PATH or postgresql://USER@HOST/DATABASE" in str(exc.value)


def test_a_password_is_never_shown() -> None:
    assert shown_url("postgresql://app:s3cret@h/db") == "postgresql://app:***@h/db"
    assert "s3cret" not in shown_url("not a url://app:s3cret@h")


def test_a_new_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    from cobro.store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    engine.dispose()
    assert (tmp_path / "new.db").stat().st_mode & 0o777 == 0o600
