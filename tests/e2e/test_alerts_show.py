"""``alerts show ID`` (one alert's whole history) and ``alerts list`` grouping repeats and
showing acknowledgement notes, as a user runs them (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli_clinical import Cli
from tests.support.events import line

NOW = "2025-03-10T10:00:00+01:00"


def _lab(day: str, value: float) -> bytes:
    return line("LabResultRecorded", "P0007", f"{day}T09:00:00+01:00",
                {"analyte": "ionized_calcium", "value": value, "unit": "mmol/L"})


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    c = Cli(db_url)
    lines = [line("PatientEnrolled", "P0007", "2025-01-10",
                  {"birth_date": "2012-05-01", "sex": "female"}),
             _lab("2025-03-06", 0.9), _lab("2025-03-08", 0.85), _lab("2025-03-10", 0.8),
             line("PatientEnrolled", "P0008", "2025-01-10",
                  {"birth_date": "2012-05-01", "sex": "male"}),
             line("LabResultRecorded", "P0008", "2025-03-10T09:00:00+01:00",
                  {"analyte": "ionized_calcium", "value": 0.9, "unit": "mmol/L"})]
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    c("import", str(f))
    c("worker", "--once", "--now", NOW)
    return c


def test_repeats_of_one_concern_are_one_line(cli: Cli) -> None:
    alerts = cli.json("alerts", "list")
    p7 = sorted((a for a in alerts if a["patient"] == "P0007" and a["kind"] == "hypocalcaemia"),
                key=lambda a: a["due_on"])
    assert [a["due_on"] for a in p7] == ["2025-03-06", "2025-03-08", "2025-03-10"]
    human = cli("alerts", "list").stdout.splitlines()
    hypo = [x for x in human if "hypocalcaemia" in x]
    assert len(hypo) == 2  # P0007's three on one line, P0008's on its own
    (seven,) = [x for x in hypo if "P0007" in x]
    assert seven.startswith(p7[-1]["alert_id"])
    assert "hypocalcaemia x3 (also " + p7[0]["alert_id"][:8] + ", " + p7[1]["alert_id"][:8] \
        in seven
    assert "due 2025-03-06..2025-03-10" in seven and "[3 sent]" in seven
    (eight,) = [x for x in hypo if "P0008" in x]
    assert " x" not in eight.split("hypocalcaemia")[1].split("due")[0]
    # acknowledging one of them splits it off, with its note
    cli("alerts", "ack", p7[0]["alert_id"][:8], "--by", "dr.ruiz", "--note", "labs booked")
    human = cli("alerts", "list").stdout.splitlines()
    acked = [x for x in human if x.startswith(p7[0]["alert_id"])]
    assert acked and "acknowledged by dr.ruiz" in acked[0]
    assert acked[0].endswith("note: labs booked")
    assert any("hypocalcaemia x2" in x and "P0007" in x for x in human)


def test_show_prints_the_whole_history(cli: Cli) -> None:
    alerts = cli.json("alerts", "list")
    urgent = next(a for a in alerts if a["patient"] == "P0008" and a["kind"] == "hypocalcaemia")
    cli("alerts", "ack", urgent["alert_id"], "--by", "dr.ruiz", "--note", "calcium given")
    out = cli("alerts", "show", urgent["alert_id"][:8]).stdout.splitlines()
    assert out[0] == (f"alert {urgent['alert_id']}: P0008 hypocalcaemia (urgent, item "
                      f"{urgent['item']}), due 2025-03-10; acknowledged by dr.ruiz; level 0")
    history = [x.split("Z  ", 1)[1] for x in out[1:] if x.startswith("  2")]
    assert history[0].startswith("raised by alert-worker")
    assert "hypocalcaemia, urgent, due 2025-03-10" in history[0]
    assert history[1].startswith("sent to duty.desk by console (attempt 1, provider id ")
    assert history[2] == "acknowledged by dr.ruiz: calcium given"
    assert out[1].startswith("  2025-03-10 09:00:00Z")  # when it was raised (UTC)
    deliveries = [x for x in out if x.startswith("  delivery")]
    assert deliveries == ["  delivery  duty.desk by console (immediate, level 0): sent after "
                          "1 attempt(s), sent 2025-03-10T09:00:00Z"]


def test_show_a_missing_or_ambiguous_alert(cli: Cli) -> None:
    missing = cli("alerts", "show", "no-such-alert", ok=False)
    assert missing.exit_code == 4 and "no alert 'no-such-alert'" in missing.stderr
    assert cli("alerts", "show", "", ok=False).exit_code == 4
