"""The ward list as a person reads it (``cno-tracker due`` without ``--json``): column
headers, and news apart from history. News fell due within the alert look-back (the worker
raises an alert for it); then what falls due soon; last, history: what fell due before the
look-back and stays on the list until done, but raises no alert any more."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import click

HEADER = f"{'due on':<10}  {'status':<8} {'severity':<8} {'patient':<12} what (item)"


def sections(items: list[dict[str, Any]], on: date, lookback_days: int
             ) -> list[tuple[str, list[dict[str, Any]]]]:
    """(heading, items) of the non-empty sections, in reading order."""
    since = (on - timedelta(days=lookback_days)).isoformat()
    soon = [i for i in items if i["status"] == "due_soon"]
    fired = [i for i in items if i["status"] != "due_soon"]
    news = [i for i in fired if i["fires_on"] >= since]
    history = [i for i in fired if i["fires_on"] < since]
    return [(heading, rows) for heading, rows in (
        (f"news: fell due since {since} (alerts are raised for these)", news),
        ("coming up", soon),
        (f"history: fell due before {since}, still open (no alert is raised)", history),
    ) if rows]


def print_ward_list(items: list[dict[str, Any]], on: date, lookback_days: int) -> None:
    if not items:
        click.echo(f"nothing due on {on.isoformat()}")
        return
    for n, (heading, rows) in enumerate(sections(items, on, lookback_days)):
        click.echo(("\n" if n else "") + f"== {heading}: {len(rows)}")
        click.echo(HEADER)
        for i in rows:
            status = i["status"].replace("_", " ")
            click.echo(f"{i['due_on']:<10}  {status:<8} {i['severity']:<8} {i['patient']:<12} "
                       f"{i['kind']} ({i['item']})")
