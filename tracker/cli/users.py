"""``cno-tracker users``: the web application's staff accounts."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable

import click

from tracker.accounts import ROLES, Accounts, Role
from tracker.cli.common import State, check_by, emit_json, handles_errors, pass_state

BY_HELP = "who made the change (recorded in the account's history)"


def accounts_of(state: State) -> Accounts:
    app = state.app()
    return Accounts(app.engine, app.store, app.clock, member_exists=_roster_check(state))


def _roster_check(state: State) -> Callable[[str], bool] | None:
    """``--member`` is checked against the roster's staff ids when one is configured
    (only the ids are read: the worker validates the roster itself)."""
    path = state.app().settings.roster_file
    if path is None:
        return None
    try:
        with path.open("rb") as fh:
            staff = tomllib.load(fh).get("staff", [])
    except (OSError, tomllib.TOMLDecodeError):
        return None  # the worker reports a broken roster; it does not stop account admin
    ids = {s.get("id") for s in staff if isinstance(s, dict)}
    return ids.__contains__


def _read_password(stdin: bool, confirm: bool) -> str:
    if stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    value: str = click.prompt("password", hide_input=True, confirmation_prompt=confirm)
    return value


@click.group("users")
def users_group() -> None:
    """Staff accounts of the web application (roles: clinician, nurse, pharmacist,
    auditor, admin, integration)."""


@users_group.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="the web role")
@click.option("--member", metavar="ROSTER_ID", help="the roster's staff id (for 'my alerts')")
@click.option("--password-stdin", is_flag=True,
              help="read the password from the first line of standard input")
@click.option("--by", callback=check_by, default="admin-cli", show_default=True, help=BY_HELP)
@pass_state
@handles_errors
def add_cmd(state: State, name: str, role: str, member: str | None, password_stdin: bool,
            by: str) -> None:
    """Create the account NAME (lowercase; the password is asked for twice).

    An `integration` account (the machine account of POST /fhir) has no password: its API
    token is printed once, on the second line; only its SHA-256 is kept."""
    if role == Role.INTEGRATION:
        if member is not None or password_stdin:
            raise click.UsageError("--role integration takes no --member and no password "
                                   "(it gets an API token)")
        account, token = accounts_of(state).add_integration(name, by=by)
        click.echo(f"account {account.username} created ({account.role})")
        click.echo(token)
        click.echo("this API token is shown once: keep it in the sender's secret store",
                   err=True)
        return
    password = _read_password(password_stdin, confirm=True)
    account = accounts_of(state).add(name, role, password, member=member, by=by)
    click.echo(f"account {account.username} created ({account.role})")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
@pass_state
@handles_errors
def list_cmd(state: State, as_json: bool) -> None:
    """Every account with its role, roster member and state."""
    accounts = accounts_of(state).all()
    now = state.app().clock.now()
    rows = [{"username": a.username, "role": a.role, "member": a.member,
             "state": "disabled" if a.disabled else "locked" if a.locked(now) else "active",
             "created_at": a.created_at.isoformat()} for a in accounts]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no accounts")
        return
    for r in rows:
        click.echo(f"{r['username']:<24} {r['role']:<12} {r['member'] or '-':<20} {r['state']}")


@users_group.command("disable")
@click.argument("name")
@click.option("--reason", help="why (kept in the account's history)")
@click.option("--by", callback=check_by, default="admin-cli", show_default=True, help=BY_HELP)
@pass_state
@handles_errors
def disable_cmd(state: State, name: str, reason: str | None, by: str) -> None:
    """Disable NAME: no more logins; a live session stops at its next request."""
    if accounts_of(state).disable(name, by=by, reason=reason):
        click.echo(f"account {name} disabled")
    else:
        click.echo(f"account {name} was disabled already")


@users_group.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True,
              help="read the password from the first line of standard input")
@click.option("--by", callback=check_by, default="admin-cli", show_default=True, help=BY_HELP)
@pass_state
@handles_errors
def set_password_cmd(state: State, name: str, password_stdin: bool, by: str) -> None:
    """Set a new password for NAME (also lifts a lock-out)."""
    accounts = accounts_of(state)
    accounts.require(name)
    accounts.set_password(name, _read_password(password_stdin, confirm=True), by=by)
    click.echo(f"password of {name} changed")


@users_group.command("set-role")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="the new web role")
@click.option("--member", metavar="ROSTER_ID", help="the roster's staff id (for 'my alerts')")
@click.option("--by", callback=check_by, default="admin-cli", show_default=True, help=BY_HELP)
@pass_state
@handles_errors
def set_role_cmd(state: State, name: str, role: str, member: str | None, by: str) -> None:
    """Change the role (and roster member) of NAME; recorded as an event."""
    account = accounts_of(state).set_role(name, role, member=member, by=by)
    click.echo(f"account {account.username} is now {account.role}")


@users_group.command("token")
@click.argument("name")
@click.option("--rotate", "action", flag_value="rotate", help="issue a new API token (printed "
              "once); the earlier ones stop working")
@click.option("--revoke", "action", flag_value="revoke", help="revoke every API token of NAME")
@click.option("--by", callback=check_by, default="admin-cli", show_default=True, help=BY_HELP)
@pass_state
@handles_errors
def token_cmd(state: State, name: str, action: str | None, by: str) -> None:
    """Rotate (--rotate) or revoke (--revoke) the API token of the integration account NAME."""
    if action is None:
        raise click.UsageError("say --rotate or --revoke")
    accounts = accounts_of(state)
    if action == "rotate":
        click.echo(accounts.rotate_token(name, by=by))
        click.echo("this API token is shown once; the earlier ones no longer work", err=True)
        return
    n = accounts.revoke_tokens(name, by=by)
    click.echo(f"revoked {n} token(s) of {name}")
