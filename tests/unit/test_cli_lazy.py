"""The entry point lists its commands without importing them, and the list is true."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from tracker.cli.main import COMMANDS, cli

HEAVY = ("sqlalchemy", "pydantic", "pydantic_settings", "events.vocabulary", "matplotlib",
         "scipy", "numpy", "twilio", "fastapi", "starlette", "fhir", "hl7", "apscheduler")


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules), "
                               "file=sys.stderr)"],
        capture_output=True, text=True, check=True).stderr.split()
    return {m for m in out if any(m == h or m.startswith(h + ".") for h in HEAVY)}


def test_help_imports_no_command_module() -> None:
    code = ("import sys\nfrom tracker.cli.main import cli\n"
            "try:\n    cli(['--help'], prog_name='cno-tracker')\nexcept SystemExit:\n    pass")
    assert _loaded_after(code) == set()


def test_status_does_not_load_plotting_messaging_web_or_interop() -> None:
    code = "from tracker.cli.clinical import status_cmd"
    loaded = _loaded_after(code)
    assert {m.split(".")[0] for m in loaded} <= {"sqlalchemy", "pydantic",
                                                  "pydantic_settings", "events"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_table_help_is_the_commands_own(name: str) -> None:
    command = COMMANDS[name].load()
    assert command.name == name
    for limit in (45, 80, 1000):
        table = click.Command(name, help=COMMANDS[name].help)
        assert table.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_help_lists_every_command_once() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines()
              if line.startswith("  ") and not line.startswith("   ")]
    assert listed == sorted(COMMANDS)


def test_a_lazy_command_runs_and_unknown_commands_are_refused() -> None:
    result = CliRunner().invoke(cli, ["db", "--help"])
    assert result.exit_code == 0 and "upgrade" in result.output
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2 and "No such command" in result.output
    assert isinstance(cli.get_command(click.Context(cli), "status"), click.Command)


def test_start_up_reads_no_package_metadata() -> None:
    """``--version`` looks the version up when asked; other commands never pay for it."""
    out = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom tracker.cli.main import cli\n"
                               "print('importlib.metadata' in sys.modules)"],
        capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("cno-tracker, version ")
