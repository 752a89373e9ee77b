"""``cno-tracker db``: the database schema."""

from __future__ import annotations

import click

from tracker import db
from tracker.cli.common import State, handles_errors, pass_state
from tracker.settings import load_settings


@click.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@pass_state
@handles_errors
def db_upgrade(state: State) -> None:
    """Bring the schema up to date (safe to run from several releases at once)."""
    from events.store.engine import make_engine
    from tracker.cli.everyday import database_label

    settings = load_settings()
    db.prepare_sqlite_file(settings.database_url)  # a new file is created 0600, before reading
    engine = make_engine(settings.database_url)
    try:
        before = db.current_revisions(engine)
        db.upgrade(settings.database_url)
        after = db.current_revisions(engine)
    finally:
        engine.dispose()
    where = database_label(settings.database_url)
    if before == after:
        click.echo(f"{where}: schema already at {', '.join(sorted(after))}; nothing to do")
    else:
        click.echo(f"{where}: schema upgraded from {', '.join(sorted(before)) or 'empty'} "
                   f"to {', '.join(sorted(after))}")
