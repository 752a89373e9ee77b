"""The last line of defence of the CLI: every failure is one line and an exit code.

Known refusals are translated where they happen (``common.handles_errors``); what reaches
:class:`FailSafeGroup` is either an environment problem with a documented code (the
database cannot be reached: 5; a file cannot be read or written: 2) or a bug. A bug prints
one line with an error id and exits 70 (``EX_SOFTWARE``); its traceback goes to the error
log (``CNO_TRACKER_ERROR_LOG``, default ``$XDG_STATE_HOME/cno-tracker/errors.log``,
created 0600) and, only with ``cno-tracker --debug``, to the terminal. SQL parameters are
hidden from every message and traceback: they may hold a patient's data."""

from __future__ import annotations

import os
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any, NoReturn

import click

from events.errors import ConcurrencyConflict, EventError
from tracker.errors import TrackerError
from tracker.files import private_file

EXIT_SOFTWARE = 70


def error_log_path() -> Path:
    configured = os.environ.get("CNO_TRACKER_ERROR_LOG")
    if configured:
        return Path(configured)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cno-tracker" / "errors.log"


def _sqlalchemy_errors() -> Any:
    """``sqlalchemy.exc`` if SQLAlchemy was imported, else None: an error can only be one
    of its exceptions once it is loaded, and ``--help`` should not load it (start-up)."""
    return sys.modules.get("sqlalchemy.exc")


def _first_line(exc: BaseException) -> str:
    sa = _sqlalchemy_errors()
    text = (str(exc.orig) if sa is not None and isinstance(exc, sa.DBAPIError)
            and exc.orig is not None else str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def known_failure(exc: BaseException) -> tuple[str, int] | None:
    """(message, exit code) of a refusal or an environment failure, or None for a bug."""
    if isinstance(exc, TrackerError):
        return (str(exc), exc.exit_code)
    if isinstance(exc, EventError):
        return (str(exc), 3 if isinstance(exc, ConcurrencyConflict) else 2)
    sa = _sqlalchemy_errors()
    if sa is not None and (isinstance(exc, sa.OperationalError) or (
            isinstance(exc, sa.DBAPIError) and exc.connection_invalidated)):
        from tracker.bootstrap import masked

        url = os.environ.get("CNO_TRACKER_DATABASE_URL", "sqlite:///cno-tracker.db")
        return (f"cannot use the database {masked(url)}: {_first_line(exc)}", 5)
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        where = f"{exc.filename}: " if exc.filename else ""
        return (f"{where}{exc.strerror or _first_line(exc)}", 2)
    return None


def _hide_parameters(exc: BaseException | None) -> None:
    sa = _sqlalchemy_errors()
    if sa is None:
        return
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sa.StatementError):
            exc.hide_parameters = True
        exc = exc.__cause__ or exc.__context__


def _write_log(error_id: str, exc: BaseException) -> Path | None:
    path = error_log_path()
    text = "".join(traceback.format_exception(exc))
    try:
        with private_file(path, "a") as fh:
            fh.write(f"--- error {error_id}\n{text}")
    except OSError:
        return None
    return path


def unexpected(exc: BaseException, *, debug: bool) -> NoReturn:
    """One line with an error id on the terminal, the traceback in the error log."""
    _hide_parameters(exc)
    error_id = uuid.uuid4().hex[:12]
    where = _write_log(error_id, exc)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    detail = f"the traceback is in {where}" if where else "run again with --debug"
    click.echo(f"error: unexpected {type(exc).__name__} (error id {error_id}); {detail}",
               err=True)
    sys.exit(EXIT_SOFTWARE)


class FailSafeGroup(click.Group):
    """A group whose commands never end in a bare traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # the last line of defence
            debug = bool(ctx.meta.get("cno_tracker.debug"))
            known = known_failure(exc)
            if known is None:
                unexpected(exc, debug=debug)
            _hide_parameters(exc)
            if debug:
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(f"error: {known[0]}", err=True)
            sys.exit(known[1])
