"""The start-up schema check reads revisions without Alembic, and agrees with Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tracker import db


def test_script_heads_are_alembics() -> None:
    assert db.script_heads() == db.head_revisions("sqlite://")


def test_stored_revisions_are_alembics(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert db.stored_revisions(engine) == db.current_revisions(engine)
        assert db.is_current(engine, db_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0009_receipts'"))
        assert db.stored_revisions(engine) == {"0009_receipts"} == db.current_revisions(engine)
        assert not db.is_current(engine, db_url)
    finally:
        engine.dispose()


def test_empty_database_has_no_revision(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert db.stored_revisions(engine) == set() == db.current_revisions(engine)
        assert not db.is_current(engine, "")
    finally:
        engine.dispose()


@pytest.mark.parametrize("script, readable", [
    ('revision: str = "0099_x"\ndown_revision: str | None = "0011_api_tokens"\n', True),
    ('revision = "0099_x"\ndown_revision = ("0011_api_tokens", "0010_oncall")\n', True),
    ('revision = "0099_x"\ndown_revision = PREVIOUS\n', False),  # not a literal
    ('revision = "0099_x"\n', False),  # no down_revision line
])
def test_unreadable_script_falls_back_to_alembic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 script: str, readable: bool) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "a.py").write_text('revision = "0011_api_tokens"\ndown_revision = None\n')
    (versions / "b.py").write_text(script)
    monkeypatch.setattr(db, "script_location", lambda: tmp_path)
    assert db.script_heads() == ({"0099_x"} if readable else None)


def test_import_start_up_does_not_load_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cno.db'}"
    db.upgrade(url)
    code = ("import sys\nfrom tracker.bootstrap import bootstrap\n"
            "from tracker.settings import Settings\n"
            f"bootstrap(Settings(database_url={url!r})).close()\n"
            "print(sorted(m for m in sys.modules if m.startswith('alembic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
