"""Commands imported when they run, not when the program starts.

``cno-tracker --help`` (and a typo) used to import every command's module, and with them
SQLAlchemy, pydantic, the vocabulary, the read model, the interop layer: 0.4 s before the
first line of help. A :class:`LazyGroup` lists its commands from a table (name, where the
command lives, its one-line help) and imports a command's module only when that command
is resolved (run, or asked for its own ``--help``). The one-line help in the table is
checked against each command's own docstring by ``tests/unit/test_cli_lazy.py``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import click

from tracker.cli.failures import FailSafeGroup


@dataclass(frozen=True, slots=True)
class Lazy:
    """A command not yet imported: ``module:attribute`` and its one-line help."""

    target: str
    help: str

    def load(self) -> click.Command:
        module, _, attr = self.target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


class LazyGroup(FailSafeGroup):
    """A fail-safe group whose commands in ``lazy`` are imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, Lazy] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, Lazy] = dict(lazy or {})

    def add_lazy(self, name: str, target: str, help: str) -> None:
        self.lazy[name] = Lazy(target, help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self.lazy[cmd_name].load(), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, from the table for commands not imported yet."""
        rows: list[tuple[str, str | None, click.Command | None]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is not None:
                if not command.hidden:
                    rows.append((name, None, command))
            else:
                rows.append((name, self.lazy[name].help, None))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _, _ in rows)
        entries = []
        for name, text, command in rows:
            if command is None:  # click's own shortening, of the table's text
                command = click.Command(name, help=text)
            short = command.get_short_help_str(limit)
            entries.append((name, short))
        with formatter.section("Commands"):
            formatter.write_dl(entries)
