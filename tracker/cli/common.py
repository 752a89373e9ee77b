"""What every command shares: building the app once, printing, and turning errors into
a message a person can act on with a non-zero exit status."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any, TypeVar

import click
import orjson

from events.errors import ConcurrencyConflict, EventError, InvalidEvent
from events.vocabulary.common import CONTROL_RE, EARLIEST, LATEST, PATIENT_RE
from tracker.bootstrap import App, bootstrap
from tracker.errors import ImportRefused, TrackerError
from tracker.settings import load_settings

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """Per-invocation state: the app is built on first use, and closed at exit."""

    def __init__(self) -> None:
        self._app: App | None = None

    def app(self) -> App:
        if self._app is None:
            self._app = bootstrap(load_settings())
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


pass_state = click.make_pass_decorator(State, ensure=True)


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ImportRefused as exc:
            for p in exc.problems:
                click.echo(f"error: {p}", err=True)
            fail(f"{len(exc.problems)} problem(s) found; nothing was written", exc.exit_code)
        except InvalidEvent as exc:
            for p in exc.problems:
                click.echo(f"error: {p}", err=True)
            fail("invalid input; nothing was written", 2)
        except ConcurrencyConflict as exc:
            fail(str(exc), 3)
        except TrackerError as exc:
            fail(str(exc), exc.exit_code)
        except EventError as exc:
            fail(str(exc), 2)
    return wrapper  # type: ignore[return-value]


def emit_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def parse_instant(value: str | None, param: str, zone: tzinfo) -> datetime | None:
    """An ISO instant with its offset; a bare date means the end of that local day
    ("what did we know on 3 March")."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            _in_calendar(d, param)
            return datetime.combine(d, time.max, tzinfo=zone).astimezone(UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or datetime",
                                 param_hint=param) from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2015-03-02T09:30:00+01:00",
                                 param_hint=param)
    _in_calendar(moment.date(), param)
    return moment


def parse_date(value: str | None, param: str) -> date | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date (YYYY-MM-DD)",
                                 param_hint=param) from None
    _in_calendar(day, param)
    return day


def _in_calendar(day: date, param: str) -> None:
    if not EARLIEST <= day <= LATEST:
        raise click.BadParameter(f"{day} is outside the clinical calendar "
                                 f"({EARLIEST} to {LATEST})", param_hint=param)


def check_ref(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A PATIENT argument of the contract's shape, wholly: ``"P0001\\n"`` is bad input,
    not an unknown patient (a well-formed unknown reference stays "not found")."""
    if PATIENT_RE.fullmatch(value) is None:
        raise click.BadParameter(
            f"{value!r} is not a patient reference (letters, digits, '.', '_', '-'; no "
            "spaces or control characters)")
    return value


def check_by(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--by``: the rules of ``recorded_by`` (no control character, no surrounding space)."""
    if value is None:
        return None
    if CONTROL_RE.search(value) or value != value.strip() or not 0 < len(value) <= 128:
        raise click.BadParameter("must be 1 to 128 characters, without control characters "
                                 "or surrounding spaces")
    return value
