"""The ward list's sections: news within the look-back (boundary day included), what is
coming up, and history older than the look-back; with column headers."""

from __future__ import annotations

from datetime import date
from typing import Any

from click.testing import CliRunner

from tracker.cli.wardlist import HEADER, print_ward_list, sections

ON = date(2026, 3, 15)  # look-back 14 days: news fired on or after 2026-03-01


def item(fires_on: str, status: str = "overdue", patient: str = "P0001") -> dict[str, Any]:
    return {"patient": patient, "kind": "post_dose_labs_due", "item": "post_dose_3_labs",
            "severity": "urgent", "due_on": fires_on, "fires_on": fires_on, "status": status}


def test_news_starts_on_the_first_day_of_the_look_back() -> None:
    items = [item("2026-02-28", patient="P-day-before"), item("2026-03-01", patient="P-on"),
             item("2026-03-15", "due", patient="P-today"),
             item("2026-03-18", "due_soon", patient="P-soon")]
    got = {heading.split(":")[0]: [i["patient"] for i in rows]
           for heading, rows in sections(items, ON, 14)}
    assert got == {"news": ["P-on", "P-today"], "coming up": ["P-soon"],
                   "history": ["P-day-before"]}
    assert next(h for h, _ in sections(items, ON, 14)) == (
        "news: fell due since 2026-03-01 (alerts are raised for these)")


def test_empty_sections_are_left_out_and_every_section_has_headers() -> None:
    def printed(items: list[dict[str, Any]]) -> list[str]:
        runner = CliRunner()
        from click import command

        @command()
        def show() -> None:
            print_ward_list(items, ON, 14)

        return runner.invoke(show).output.splitlines()

    out = printed([item("2020-01-01"), item("2020-02-01", patient="P0002")])
    assert out == ["== history: fell due before 2026-03-01, still open (no alert is raised): 2",
                   HEADER,
                   "2020-01-01  overdue  urgent   P0001        post_dose_labs_due "
                   "(post_dose_3_labs)",
                   "2020-02-01  overdue  urgent   P0002        post_dose_labs_due "
                   "(post_dose_3_labs)"]
    assert HEADER.split()[:5] == ["due", "on", "status", "severity", "patient"]
    assert printed([]) == ["nothing due on 2026-03-15"]
