"""The cohort report as people read it: Markdown, a standalone HTML page, CSV and JSON."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

import orjson

from tracker.reports.cohort import CohortReport
from tracker.reports.stats import percent


def to_markdown(report: CohortReport) -> str:
    lines = ["# Cohort report: Table 4 from the record", "",
             f"Inclusion: {report.criteria}.", "",
             f"Included {len(report.included)} of {report.total} patients."]
    for reason, count in report.exclusion_counts():
        refs = ", ".join(p for p, why in report.excluded if why == reason)
        lines.append(f"Excluded {count}: {reason} ({refs}).")
    lines += ["", "| Variable | Value | Choice |", "|---|---|---|"]
    for s in report.sections:
        lines.append(f"| **{_md(s.heading)}** | | |")
        for r in s.rows:
            lines.append(f"| {_md(r.label)}, {r.statistic} | {r.value} | {_md(r.choice)} |")
    lines += ["", "Notes:", *(f"- {n}" for n in report.notes)]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_html(report: CohortReport) -> str:
    e = html.escape
    body = ["<h1>Cohort report: Table 4 from the record</h1>",
            f"<p>Inclusion: {e(report.criteria)}.</p>",
            f"<p>Included {len(report.included)} of {report.total} patients.</p>"]
    if report.excluded:
        body.append("<ul class='excluded'>" + "".join(
            f"<li>Excluded {n}: {e(reason)} "
            f"({e(', '.join(p for p, w in report.excluded if w == reason))})</li>"
            for reason, n in report.exclusion_counts()) + "</ul>")
    rows = ["<tr><th>Variable</th><th>Value</th><th>Choice</th></tr>"]
    for s in report.sections:
        rows.append(f"<tr class='section'><th colspan='3'>{e(s.heading)}</th></tr>")
        rows.extend(f"<tr><td>{e(r.label)}, {e(r.statistic)}</td><td class='num'>"
                    f"{e(r.value)}</td><td class='choice'>{e(r.choice)}</td></tr>"
                    for r in s.rows)
    body.append("<table>" + "".join(rows) + "</table>")
    body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes)
                + "</ul>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#111}"
             "table{border-collapse:collapse;width:100%}td,th{border:1px solid #999;"
             "padding:.3em .5em;text-align:left;vertical-align:top}"
             "tr.section th{background:#e8e8e8}td.num{white-space:nowrap}"
             "td.choice{font-size:.85em;color:#333}")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<title>Cohort report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


CSV_COLUMNS = ("section", "section_n", "variable", "statistic", "value", "count",
               "denominator", "percent", "n", "centre", "spread", "q1", "q3", "min", "max",
               "shapiro_w", "shapiro_p", "choice")


def to_csv(report: CohortReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for s in report.sections:
        for r in s.rows:
            sm = r.summary
            stats: list[Any] = ([sm.n, sm.centre, sm.spread, sm.q1, sm.q3, sm.minimum,
                                 sm.maximum, sm.shapiro_w, sm.shapiro_p] if sm else [""] * 9)
            pct = percent(r.count or 0, r.total or 0) if sm is None else None
            w.writerow([s.title, s.n, r.label, r.statistic, r.value,
                        "" if sm else r.count, "" if sm else r.total,
                        "" if pct is None else f"{pct:.1f}",
                        *("" if x is None else (f"{x:.4f}" if isinstance(x, float) else x)
                          for x in stats), sm.note if sm else ""])
    return buf.getvalue()


def to_json(report: CohortReport) -> str:
    doc = {
        "criteria": {"at": report.at.isoformat(),
                     "from": report.date_from.isoformat() if report.date_from else None,
                     "to": report.date_to.isoformat() if report.date_to else None,
                     "jansson_confirmed": True, "under_age_years": report.max_age},
        "patients": report.total, "included": report.included,
        "excluded": [{"patient": p, "reason": why} for p, why in report.excluded],
        "sections": [{"title": s.title, "n": s.n, "unit": s.unit,
                      "rows": [r.as_json() for r in s.rows]} for s in report.sections],
        "notes": report.notes,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


FORMATS = {"md": to_markdown, "html": to_html, "csv": to_csv, "json": to_json}


def render(report: CohortReport, fmt: str) -> str:
    """The report in one of ``FORMATS``: md, html, csv, json."""
    return FORMATS[fmt](report)
