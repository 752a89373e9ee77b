"""The package as a user installs it: build the wheel, install it into a fresh virtualenv
(no source checkout on the path) and migrate a database with it.

An editable install finds ``migrations/`` beside the packages; a wheel must carry them
(``tracker/migrations``) and Alembic must not need ``alembic.ini``. The fresh venv borrows
the third-party dependencies of the running one through a ``.pth`` line (installing them
again takes minutes); a path in a ``.pth`` file does not run that folder's own ``.pth``
files, so the editable install of the checkout stays out and ``tracker`` is the wheel's."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


def test_the_built_wheel_migrates_a_database_from_anywhere(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(dist),
                  str(ROOT)], cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    build_log = built.stdout + built.stderr
    assert "SetuptoolsDeprecationWarning" not in build_log
    assert "Package would be ignored" not in build_log
    (wheel,) = dist.glob("cno_tracker-*.whl")

    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    installed = _run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                     cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    fresh_site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                      cwd=tmp_path).stdout.strip()
    borrowed = {sysconfig.get_path("purelib"), *site.getsitepackages()}
    (Path(fresh_site) / "borrowed-deps.pth").write_text("\n".join(sorted(borrowed)) + "\n")

    elsewhere = tmp_path / "elsewhere"  # no alembic.ini, no migrations/ folder here
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNO_", "PYTHON"))}
    env["CNO_TRACKER_DATABASE_URL"] = f"sqlite:///{elsewhere / 'fresh.db'}"
    cli = str(env_dir / "bin" / "cno-tracker")

    first = _run([cli, "db", "upgrade"], cwd=elsewhere, env=env)
    assert first.returncode == 0, first.stderr
    assert "schema upgraded from empty to" in first.stdout
    again = _run([cli, "db", "upgrade"], cwd=elsewhere, env=env)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout

    where = _run([str(py), "-c", "import tracker.db as d; print(d.script_location())"],
                 cwd=elsewhere, env=env)
    assert str(env_dir) in where.stdout, where.stdout  # the wheel's copy, not the checkout's

    info = _run([cli, "info"], cwd=elsewhere, env=env)
    assert info.returncode == 0, info.stderr
    assert "(up to date)" in info.stdout
