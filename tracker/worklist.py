"""The ward list across patients (``cno-tracker due`` and the web's ward list ``/``), read
from the read model: :func:`read_worklist` is the one query both use."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection

from tracker.due import SEVERITY_RANK, is_current

SOON_DAYS = 7


def worklist(rows: Iterable[dict[str, Any]], at: date, *, soon_days: int = SOON_DAYS,
             lookback_days: int = 14) -> list[dict[str, Any]]:
    """One line per open item (monitoring item, dose due, alert) fired by ``at`` or due
    within ``soon_days``: its reached severity and whether it is due soon, due or overdue.
    News of a moment (a relapse, a deviation) stays on the list for ``lookback_days``."""
    horizon = at + timedelta(days=soon_days)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["fires_on"] <= horizon and is_current(r["kind"], r["fires_on"], at, lookback_days):
            groups.setdefault(r["grp"], []).append(r)
    out = []
    for phases in groups.values():
        fired = [p for p in phases if p["fires_on"] <= at]
        if fired:
            top = max(fired, key=lambda p: (SEVERITY_RANK[p["severity"]], p["fires_on"]))
            overdue = top["key"].endswith(":overdue")
            status = "overdue" if overdue else "due"
        else:
            top = min(phases, key=lambda p: p["fires_on"])
            status = "due_soon"
        out.append({"patient": top["patient"], "kind": top["kind"], "item": top["item"],
                    "severity": top["severity"], "due_on": top["item_due_on"].isoformat(),
                    "fires_on": top["fires_on"].isoformat(), "status": status})
    out.sort(key=lambda x: (x["due_on"], -SEVERITY_RANK[x["severity"]], x["patient"], x["kind"]))
    return out


def read_worklist(conn: Connection, on: date, *, soon_days: int = SOON_DAYS,
                  lookback_days: int = 14) -> list[dict[str, Any]]:
    """Today's worklist from the read model as it stands (the caller catches it up first):
    the due items firing by ``on`` + ``soon_days`` (news only from the look-back window),
    through :func:`worklist`."""
    from tracker.readmodel import due_before

    rows = due_before(conn, on + timedelta(days=soon_days), with_causes=False,
                      news_since=on - timedelta(days=lookback_days))
    return worklist(rows, on, soon_days=soon_days, lookback_days=lookback_days)
