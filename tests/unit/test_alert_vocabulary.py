"""One typed vocabulary for alerts, and its exhaustiveness: every kind the due-item
schedule can produce has a severity, a neutral label at each of its severities and a
route in the rosters we ship (a kind without a label used to dead-letter at send time)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from alerts.messages import ALERT_KINDS, LABELS, label_for
from alerts.roster import load_roster
from alerts.tables import ALERT_STATUSES, DELIVERY_STATUSES
from alerts.vocabulary import AlertStatus, DeliveryStatus, MessageKind
from alerts.wiring import DEVELOPMENT_ROSTER
from tracker import due
from tracker.alertkinds import KIND_SEVERITIES, SEVERITY_ORDER, AlertKind, Severity

ROOT = Path(__file__).resolve().parents[2]
ROSTERS = {"examples/roster.toml": load_roster(ROOT / "examples" / "roster.toml"),
           "development": DEVELOPMENT_ROSTER}
KIND_AND_SEVERITY = [(k, s) for k in AlertKind for s in sorted(KIND_SEVERITIES[k])]


def test_every_kind_has_its_severities() -> None:
    assert set(KIND_SEVERITIES) == set(AlertKind)
    assert all(KIND_SEVERITIES[k] for k in AlertKind)


@pytest.mark.parametrize(("kind", "severity"), KIND_AND_SEVERITY)
def test_every_kind_has_a_label_at_each_of_its_severities(kind: AlertKind,
                                                          severity: Severity) -> None:
    label = label_for(kind, severity)
    assert label and kind.value not in label


@pytest.mark.parametrize("roster_name", sorted(ROSTERS))
@pytest.mark.parametrize(("kind", "severity"), KIND_AND_SEVERITY)
def test_every_kind_has_a_route_in_the_rosters_we_ship(kind: AlertKind, severity: Severity,
                                                       roster_name: str) -> None:
    roster = ROSTERS[roster_name]
    assert roster.routes(kind, severity, 0, {"sms", "email", "console"})


def test_labels_cover_the_kinds_and_nothing_else() -> None:
    assert set(LABELS) == {*AlertKind, MessageKind.ESCALATION}
    assert set(ALERT_KINDS) == {*AlertKind, *MessageKind}


def test_severities_are_ordered_and_ranked() -> None:
    assert tuple(Severity) == SEVERITY_ORDER
    assert [s.rank for s in SEVERITY_ORDER] == [0, 1, 2]
    assert due.SEVERITY_RANK == {"info": 0, "warning": 1, "urgent": 2}


def test_statuses_are_the_tables_statuses() -> None:
    assert tuple(AlertStatus) == ALERT_STATUSES
    assert tuple(DeliveryStatus) == DELIVERY_STATUSES
    assert DeliveryStatus.PENDING == "pending" and f"{AlertStatus.OPEN}" == "open"


def _produced_by_due_py() -> set[tuple[str, str]]:
    """(kind, severity) of every ``_item(patient, "<kind>", anchor, phase, "<severity>", …)``
    with literals in tracker/due.py, plus its mapping tables."""
    tree = ast.parse((ROOT / "tracker" / "due.py").read_text(encoding="utf-8"))
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_item":
            kind, severity = node.args[1], node.args[4]
            if isinstance(kind, ast.Constant) and isinstance(severity, ast.Constant):
                found.add((kind.value, severity.value))
    found.update((str(k), str(s)) for k, s in due.FINDING_ALERTS.values())
    return found


def test_every_kind_and_severity_the_schedule_produces_is_in_the_vocabulary() -> None:
    produced = _produced_by_due_py()
    assert produced, "the parser found no _item call: update this test with due.py"
    for kind, severity in produced:
        assert kind in set(AlertKind), kind
        assert severity in KIND_SEVERITIES[AlertKind(kind)], (kind, severity)
    assert set(due.MONITORING_KINDS.values()) <= set(AlertKind)
    assert set(AlertKind) >= due.STANDING_KINDS
