"""The README's commands run verbatim, in order, as a newcomer would type them.

Convention (stated also in a comment at the top of README.md, for every later section):

- a fenced block whose info string is ``sh`` is *run*: all of them, in the order of the
  README, as one bash session (``set -euo pipefail``, so every command must exit 0), in an
  empty temporary folder holding a copy of ``examples/``, with this virtualenv's ``bin``
  first on the ``PATH`` and no ``CNO_TRACKER_*`` variable set (the blocks set what they
  need; the database is SQLite unless a block exports another URL);
- ``console`` marks commands that are *shown, not run* (long-running servers, production
  hosts, ``scripts/demo`` and ``scripts/test``, which need a checkout and would recurse);
- ``text``, ``toml``, ``json``, ``python`` are contents, never run;
- a fence without an info string fails this test, so each new block makes the choice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN, SHOWN = {"sh"}, {"console", "text", "toml", "json", "python"}
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.slow


def blocks(markdown: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(markdown)]


def test_every_fence_says_whether_it_runs() -> None:
    infos = [info for info, _ in blocks(README.read_text())]
    assert infos, "no fenced blocks found"
    unknown = [i for i in infos if i not in RUN | SHOWN]
    assert not unknown, f"fences must be one of {sorted(RUN | SHOWN)}; found {unknown}"
    assert "sh" in infos


def test_the_fence_parser_reads_info_strings_and_bodies() -> None:
    text = "a\n```sh\necho 1\necho 2\n```\n\n```console\nrm -rf /\n```\n"
    assert blocks(text) == [("sh", "echo 1\necho 2\n"), ("console", "rm -rf /\n")]


def test_the_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    script = "set -euo pipefail\n" + "".join(
        f"# --- README block {n}\n{body}" for n, (info, body) in
        enumerate(blocks(README.read_text())) if info in RUN)
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path)
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, (
        f"README commands failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    assert (work / "cno-tracker.db").exists() and (work / "course.png").exists()
    out = done.stdout
    assert "recorded PatientEnrolled for P0007" in out
    assert out.count("skipped 0 duplicate(s)") == 2  # two imports, no clash
    assert "acknowledged by dr.ruiz" in out
