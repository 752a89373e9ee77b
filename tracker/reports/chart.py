"""The patient course chart: one shared time axis, stacked panels.

1. Disease state: bands active / inactive / remission (the disease-course projection
   evaluated at every observation date, and split where remission begins), relapse and
   silent radiological activity markers, visits (symptomatic filled, symptom-free hollow).
2. Treatment ladder: medication courses as bars in rows by step (1 NSAID, 2 corticoid,
   3 pamidronate, 4 biologic/MTX, then other drugs), open courses reaching the right edge.
3. Pamidronate: each dose in mg/kg as a stem (deviations marked), and the rolling-year
   mg/kg total against the 11.5 mg/kg cap (dashed).
4. Labs that drive rules, each with its threshold dashed: ionized calcium (1.0 mmol/L),
   urine calcium/creatinine (2.0 mmol/mmol), 25-OH vitamin D (50 nmol/L), creatinine.
5. Monitoring items at the evaluation date: a marker at the due date shaped by status,
   a line to the overdue date.

Readable in black and white: states, steps and statuses differ by hatching, line style
and marker shape, not by colour alone; every panel has a legend. The title names the
pseudonymous reference only (no birth date, age or sex). Pure: ``course_chart`` takes an
Evaluation and returns a matplotlib ``Figure`` (object-oriented API, no pyplot, so no
display and no global state); ``save_chart`` writes PNG or SVG by the file's suffix.

**[reading]** The time axis runs from the first clinical date on record (or symptom onset,
if earlier) to the evaluation date, but stops 180 days after the last recorded event when
the evaluation date lies further out, so a chart drawn years later stays readable; the
subtitle names the evaluation date either way, and when the axis stops early a label at
the right edge of the first panel points to it (there is then no dotted line to draw).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedFormatter, FixedLocator

from events.vocabulary import (
    ImagingRecorded,
    LabResultRecorded,
    PatientEnrolled,
    VisitRecorded,
    to_canonical,
)
from tracker.facts import Fact
from tracker.projections.course import ACTIVITY_MODALITIES, disease_course
from tracker.projections.pamidronate import Dose, rolling_total
from tracker.protocol import Protocol
from tracker.status import Evaluation

CHART_FORMATS = ("png", "svg")
#: the figure's margins (fractions): the legends need the right-hand fifth
MARGINS = {"left": 0.1, "right": 0.76, "top": 0.925, "bottom": 0.03, "hspace": 0.42}
TAIL_DAYS = 180
STATE_STYLE: dict[str, dict[str, Any]] = {  # colour-blind safe, and a hatch each
    "active": {"facecolor": "#d55e00", "hatch": "////", "edgecolor": "black"},
    # a line hatch, not dots: each dot of a dotted hatch is a path of its own in the SVG
    "inactive": {"facecolor": "#f0e442", "hatch": "--", "edgecolor": "0.3"},
    "remission": {"facecolor": "#e8f4ea", "hatch": "", "edgecolor": "0.3"},
}
STEP_ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("1", "1 NSAID", {"facecolor": "0.92", "hatch": ""}),
    ("2", "2 corticoid", {"facecolor": "0.75", "hatch": "\\\\\\"}),
    ("3", "3 pamidronate", {"facecolor": "0.55", "hatch": "xx"}),
    ("4", "4 biologic / MTX", {"facecolor": "0.35", "hatch": "++"}),
    ("other", "other", {"facecolor": "white", "hatch": "||"}),
)
MONITORING_MARKERS: dict[str, dict[str, Any]] = {
    "satisfied": {"marker": "o", "markerfacecolor": "black", "markersize": 8},
    "due": {"marker": "s", "markerfacecolor": "white", "markersize": 9},
    "overdue": {"marker": "X", "markerfacecolor": "black", "markersize": 11},
    "not_due": {"marker": "o", "markerfacecolor": "white", "markersize": 8},
}
# analyte, panel title, unit, threshold, threshold label, breach test
LAB_PANELS: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("ionized_calcium", "Ionized calcium", "mmol/L", "ionized_calcium_urgent_below",
     "below"),
    ("urine_calcium_creatinine", "Urine Ca/Cr", "mmol/mmol",
     "urine_ca_cr_threshold_mmol_mmol", "above"),
    ("vitamin_d_25oh", "25-OH vitamin D", "nmol/L", "vitamin_d_low_below", "below"),
    ("creatinine", "Creatinine", "µmol/L", None, ""),
)


@dataclass(frozen=True, slots=True)
class Segment:
    """The disease state from ``start`` up to, not including, ``end``."""

    start: date
    end: date
    state: str


def _observation_dates(facts: list[Fact]) -> list[date]:
    days = {f.on for f in facts if isinstance(f.data, VisitRecorded)
            or (isinstance(f.data, ImagingRecorded)
                and f.data.modality in ACTIVITY_MODALITIES)}
    return sorted(days)


def state_segments(facts: list[Fact], at: date, protocol: Protocol) -> list[Segment]:
    """The disease state over time: the projection folded at each observation date; an
    inactive stretch is split where remission begins. Ends on ``at`` (inclusive)."""
    days = [d for d in _observation_dates(facts) if d <= at]
    out: list[Segment] = []
    for i, day in enumerate(days):
        end = days[i + 1] if i + 1 < len(days) else at + timedelta(days=1)
        upto = [f for f in facts if f.on <= day]
        course = disease_course(upto, day, protocol)
        last = disease_course(upto, end - timedelta(days=1), protocol)
        if course.state == "inactive" and last.state == "remission" \
                and last.remission_since is not None and last.remission_since > day:
            parts = [Segment(day, last.remission_since, "inactive"),
                     Segment(last.remission_since, end, "remission")]
        else:
            parts = [Segment(day, end, course.state)]
        for p in parts:
            if out and out[-1].state == p.state and out[-1].end == p.start:
                out[-1] = Segment(out[-1].start, p.end, p.state)
            else:
                out.append(p)
    return out


def rolling_series(doses: list[Dose], start: date, end: date,
                   protocol: Protocol) -> list[tuple[date, float]]:
    """The rolling-year mg/kg as a step function: its value on each day it changes (a dose
    given, a dose leaving the 365-day window), from ``start`` to ``end``."""
    window = timedelta(days=protocol.rolling_window_days)
    changes = {start, end} | {d.on for d in doses} | {d.on + window for d in doses}
    return [(day, float(rolling_total(doses, day, protocol)))
            for day in sorted(c for c in changes if start <= c <= end)]


def _span(ev: Evaluation) -> tuple[date, date]:
    first = min(f.on for f in ev.facts)
    for f in ev.facts:
        if isinstance(f.data, PatientEnrolled) and f.data.symptom_onset is not None:
            first = min(first, f.data.symptom_onset)
    last = max(f.on for f in ev.facts)
    end = min(ev.at, last + timedelta(days=TAIL_DAYS))
    return first - timedelta(days=20), end + timedelta(days=20)


def _num(d: date) -> float:
    return float(mdates.date2num(d))


def _legend(ax: Axes, handles: list[Any] | None = None) -> None:
    kwargs: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.005, 1.0),
                              "fontsize": 9, "frameon": True, "borderaxespad": 0.0}
    if handles is not None:
        kwargs["handles"] = handles
    ax.legend(**kwargs)


def _panel_title(ax: Axes, text: str) -> None:
    ax.set_title(text, loc="left", fontsize=10, fontweight="bold", pad=3)


def _draw_state(ax: Axes, ev: Evaluation, x0: date, x1: date) -> None:
    _panel_title(ax, "Disease state")
    for seg in state_segments(ev.facts, ev.at, ev.protocol):
        if seg.state not in STATE_STYLE:
            continue
        s, e = max(seg.start, x0), min(seg.end, x1)
        if s >= e:
            continue
        ax.axvspan(_num(s), _num(e), ymin=0.45, ymax=1.0, linewidth=0.6,
                   **STATE_STYLE[seg.state])
        if (e - s).days > (x1 - x0).days * 0.06:
            ax.text(_num(s) + (_num(e) - _num(s)) / 2, 0.86, seg.state, ha="center",
                    va="center", fontsize=8, bbox={"facecolor": "white", "edgecolor": "none",
                                                   "pad": 1.0})
    visits = [(f.on, f.data) for f in ev.facts if isinstance(f.data, VisitRecorded)]
    sym = [_num(d) for d, v in visits if v.symptomatic]
    free = [_num(d) for d, v in visits if not v.symptomatic]
    ax.plot(sym, [0.3] * len(sym), "o", color="black", markersize=5, linestyle="none")
    ax.plot(free, [0.3] * len(free), "o", markerfacecolor="white", color="black",
            markersize=5, linestyle="none")
    onset = next((f.data.symptom_onset for f in reversed(ev.facts)
                  if isinstance(f.data, PatientEnrolled)), None)
    if onset is not None:
        ax.plot([_num(onset)], [0.3], "*", color="black", markersize=11, linestyle="none")
    rel = [_num(d) for d in ev.course.relapse_dates]
    ax.plot(rel, [0.12] * len(rel), "v", color="black", markersize=10, linestyle="none")
    for d in ev.course.relapse_dates:
        ax.axvline(_num(d), ymin=0.0, ymax=1.0, color="black", linewidth=0.8, linestyle="--")
    silent = [_num(d) for d in ev.course.silent_radiological_activity]
    ax.plot(silent, [0.12] * len(silent), "D", markerfacecolor="white", color="black",
            markersize=7, linestyle="none")
    ax.set_ylim(0, 1)
    ax.set_yticks([0.12, 0.3, 0.72], ["relapses", "visits", "state"], fontsize=9)
    handles: list[Any] = [Patch(label=k, linewidth=0.6, **v) for k, v in STATE_STYLE.items()]
    handles += [
        Line2D([], [], marker="o", color="black", linestyle="none", label="visit, symptoms"),
        Line2D([], [], marker="o", color="black", markerfacecolor="white", linestyle="none",
               label="visit, no symptoms"),
        Line2D([], [], marker="v", color="black", linestyle="--", markersize=9,
               label=f"relapse ({len(rel)})"),
    ]
    if onset is not None:
        handles.insert(3, Line2D([], [], marker="*", color="black", linestyle="none",
                                 markersize=10, label="symptom onset"))
    if silent:
        handles.append(Line2D([], [], marker="D", color="black", markerfacecolor="white",
                              linestyle="none", label="silent radiological activity"))
    _legend(ax, handles)


def _draw_treatment(ax: Axes, ev: Evaluation, x1: date) -> None:
    _panel_title(ax, "Treatment ladder (courses)")
    rows = {key: len(STEP_ROWS) - i for i, (key, _, _) in enumerate(STEP_ROWS)}
    styles = {key: style for key, _, style in STEP_ROWS}
    courses = sorted((*ev.treatment.open_courses, *ev.treatment.closed_courses),
                     key=lambda c: (c.since, c.course_id))
    placed: list[tuple[Any, str, date, int]] = []  # course, row, end, lane
    lanes: dict[str, list[date]] = {}  # row -> end of the latest bar in each lane
    for c in courses:
        key = str(c.step) if c.step is not None else "other"
        end = max(c.stopped_on if c.stopped_on is not None else min(ev.at, x1),
                  c.since + timedelta(days=1))
        ends = lanes.setdefault(key, [])
        lane = next((i for i, e in enumerate(ends) if e <= c.since), len(ends))
        if lane == len(ends):
            ends.append(end)
        else:
            ends[lane] = end
        placed.append((c, key, end, lane))
    for c, key, end, lane in placed:
        count = len(lanes[key])
        height = 0.62 / count
        y = rows[key] - 0.31 + (count - 1 - lane) * height
        ax.broken_barh([(_num(c.since), _num(end) - _num(c.since))], (y, height * 0.9),
                       edgecolor="black", linewidth=0.7, **styles[key])
        label = c.drug.replace("_", " ") + ("" if c.stopped_on else " (open)")
        ax.text(_num(c.since), y + height * 0.9 + 0.02, label, fontsize=8, va="bottom",
                ha="left")
    ax.set_yticks(list(rows.values()), [label for _, label, _ in STEP_ROWS], fontsize=9)
    ax.set_ylim(0.4, len(STEP_ROWS) + 0.75)
    _legend(ax, [Patch(label=label, edgecolor="black", **style)
                 for _, label, style in STEP_ROWS])


def _no_pamidronate(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no pamidronate given", transform=ax.transAxes, ha="center",
            va="center", fontsize=9, style="italic")
    ax.set_yticks([])


def _draw_doses(ax: Axes, ev: Evaluation) -> None:
    pam = ev.pamidronate
    _panel_title(ax, "Pamidronate doses (mg/kg)")
    if not pam.doses:
        _no_pamidronate(ax)
        return
    deviating = {d.event_id for d in pam.deviations}
    xs = [_num(d.on) for d in pam.doses]
    ys = [d.mg_per_kg for d in pam.doses]
    ax.vlines(xs, 0, ys, color="black", linewidth=1.2)
    ax.plot(xs, ys, "o", color="black", markersize=4, linestyle="none")
    bad = [(x, y) for x, y, d in zip(xs, ys, pam.doses, strict=True) if d.event_id in deviating]
    if bad:
        ax.plot([b[0] for b in bad], [b[1] for b in bad], "X", color="black", markersize=10,
                markerfacecolor="white", linestyle="none")
    for cycle in sorted({d.cycle for d in pam.doses}):
        first = next(d for d in pam.doses if d.cycle == cycle)
        ax.annotate(f"C{cycle}", (_num(first.on), max(ys) * 1.02), fontsize=7,
                    ha="center", va="bottom")
    limit = ev.protocol.max_dose_mg_per_kg
    ax.axhline(limit, color="black", linestyle=":", linewidth=1.0)
    ax.set_ylim(0, max(limit, max(ys)) * 1.3)
    ax.tick_params(axis="y", labelsize=9)
    handles: list[Any] = [
        Line2D([], [], marker="o", color="black", linestyle="-",
               label=f"dose ({len(pam.doses)} in {pam.cycles} cycles, C = cycle)"),
        Line2D([], [], color="black", linestyle=":", label=f"max {limit:g} mg/kg per dose"),
    ]
    if bad:
        handles.append(Line2D([], [], marker="X", color="black", markerfacecolor="white",
                              linestyle="none", markersize=9, label="protocol deviation"))
    _legend(ax, handles)


def _draw_rolling(ax: Axes, ev: Evaluation, x1: date) -> None:
    pam = ev.pamidronate
    _panel_title(ax, "Pamidronate: rolling 365-day total (mg/kg) against the yearly cap")
    if not pam.doses:
        _no_pamidronate(ax)
        return
    series = rolling_series(pam.doses, pam.doses[0].on, min(ev.at, x1), ev.protocol)
    ax.step([_num(d) for d, _ in series], [v for _, v in series], where="post",
            color="black", linewidth=1.8)
    cap = ev.protocol.annual_cap_mg_per_kg
    ax.axhline(cap, color="black", linestyle="--", linewidth=1.2)
    ax.set_ylim(0, max(cap * 1.2, max(v for _, v in series) * 1.1))
    ax.tick_params(axis="y", labelsize=9)
    _legend(ax, [
        Line2D([], [], color="black", linewidth=1.8,
               label=f"rolling-year total ({pam.rolling_year_mg_per_kg:.2f} at "
                     f"{ev.at.isoformat()})"),
        Line2D([], [], color="black", linestyle="--", label=f"cap {cap:g} mg/kg/year"),
        Line2D([], [], color="none", label=f"lifetime {pam.lifetime_mg_per_kg:.2f} mg/kg"),
    ])


def _lab_values(facts: list[Fact], analyte: str) -> list[tuple[date, float]]:
    out = []
    for f in facts:
        if isinstance(f.data, LabResultRecorded) and f.data.analyte == analyte:
            v = f.data.canonical_value
            out.append((f.on, v if v is not None
                        else to_canonical(analyte, f.data.value, f.data.unit)))
    return out


def _draw_lab(ax: Axes, ev: Evaluation, analyte: str, title: str, unit: str,
              setting: str | None, breach: str) -> None:
    _panel_title(ax, f"{title} ({unit})")
    values = _lab_values(ev.facts, analyte)
    ax.tick_params(axis="y", labelsize=9)
    threshold = float(getattr(ev.protocol, setting)) if setting else None
    handles: list[Any] = []
    if values:
        xs, ys = [_num(d) for d, _ in values], [v for _, v in values]
        ax.plot(xs, ys, color="0.4", linewidth=0.8, linestyle=":")
        ok = [(x, y) for x, y in zip(xs, ys, strict=True) if not _breach(y, threshold, breach)]
        out = [(x, y) for x, y in zip(xs, ys, strict=True) if _breach(y, threshold, breach)]
        ax.plot([p[0] for p in ok], [p[1] for p in ok], "o", color="black",
                markerfacecolor="white", markersize=5, linestyle="none")
        ax.plot([p[0] for p in out], [p[1] for p in out], "v" if breach == "below" else "^",
                color="black", markersize=8, linestyle="none")
        handles.append(Line2D([], [], marker="o", color="black", markerfacecolor="white",
                              linestyle="none", label=f"result ({len(values)})"))
        top = max(ys + ([threshold] if threshold else []))
        bottom = min(ys + ([threshold] if threshold else []))
        pad = (top - bottom) * 0.15 or abs(top) * 0.1 or 1.0
        ax.set_ylim(max(0.0, bottom - pad), top + pad)
        if out:
            handles.append(Line2D([], [], marker="v" if breach == "below" else "^",
                                  color="black", linestyle="none",
                                  label=f"{breach} threshold ({len(out)})"))
    else:
        ax.text(0.5, 0.8, "no results", transform=ax.transAxes, ha="center", va="center",
                fontsize=9, style="italic")
        if threshold is not None:
            ax.set_ylim(threshold * 0.5, threshold * 1.5)
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1.0)
        handles.append(Line2D([], [], color="black", linestyle="--",
                              label=f"threshold {threshold:g} {unit}"))
    else:
        handles.append(Line2D([], [], color="none", label="no protocol threshold"))
    _legend(ax, handles)


def _breach(value: float, threshold: float | None, how: str) -> bool:
    if threshold is None:
        return False
    return value < threshold if how == "below" else value > threshold


def _draw_monitoring(ax: Axes, ev: Evaluation) -> None:
    _panel_title(ax, f"Monitoring (status at {ev.at.isoformat()})")
    items = [i for i in ev.monitoring.items if i.due_on is not None]
    names: list[str] = []
    for i, item in enumerate(items):
        assert item.due_on is not None
        same = sum(1 for x in items[:i] if x.item == item.item)
        names.append(item.item.replace("_", " ") + (f" {same + 1}" if same else ""))
        y = len(items) - i
        if item.overdue_on is not None and item.overdue_on > item.due_on:
            ax.plot([_num(item.due_on), _num(item.overdue_on)], [y, y], color="black",
                    linewidth=0.8)
            ax.plot([_num(item.overdue_on)], [y], "|", color="black", markersize=10)
        ax.plot([_num(item.due_on)], [y], color="black", linestyle="none",
                **MONITORING_MARKERS[item.status])
        ax.annotate(item.status.replace("_", " ")
                    + (f" (missing {', '.join(item.missing)})"
                       if item.missing and item.status != "satisfied" else ""),
                    (_num(item.overdue_on or item.due_on), y), xytext=(8, 0),
                    textcoords="offset points", va="center", fontsize=8)
    if not items:
        ax.text(0.5, 0.5, "no monitoring items", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, style="italic")
    ax.set_yticks(list(range(len(items), 0, -1)), names, fontsize=9)
    ax.set_ylim(0.3, max(len(items), 1) + 0.7)
    handles: list[Any] = [Line2D([], [], color="black", linestyle="none", label=status.replace(
        "_", " "), **style) for status, style in MONITORING_MARKERS.items()]
    handles.append(Line2D([], [], color="black", marker="|", markersize=9,
                          label="due → overdue from"))
    _legend(ax, handles)


def course_chart(ev: Evaluation) -> Figure:
    """The course chart of one evaluated patient (see the module docstring)."""
    if not ev.facts:
        raise ValueError("nothing recorded: no chart to draw")
    x0, x1 = _span(ev)
    ratios = [1.6, 2.0, 1.1, 1.2, 0.9, 0.9, 0.9, 0.9, 1.2]
    # fixed margins, not the constrained layout: the legends sit in the right margin, and
    # measuring every label's box for the layout was most of a chart's drawing time
    fig = Figure(figsize=(15, 20), dpi=100)
    fig.subplots_adjust(**MARGINS)
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    _draw_state(axes[0], ev, x0, x1)
    _draw_treatment(axes[1], ev, x1)
    _draw_doses(axes[2], ev)
    _draw_rolling(axes[3], ev, x1)
    for ax, (analyte, title, unit, setting, breach) in zip(axes[4:8], LAB_PANELS, strict=True):
        _draw_lab(ax, ev, analyte, title, unit, setting, breach)
    _draw_monitoring(axes[8], ev)
    diagnosed = ev.diagnosis.diagnosed_on
    for ax in axes:
        if diagnosed is not None:
            ax.axvline(_num(diagnosed), color="0.2", linestyle="-.", linewidth=1.0)
        if x0 <= ev.at <= x1:
            ax.axvline(_num(ev.at), color="0.2", linestyle=":", linewidth=1.2)
    top = axes[0]
    label_box = {"boxstyle": "square,pad=0.15", "facecolor": "white", "edgecolor": "none"}
    if diagnosed is not None:
        # inside the panel, at its foot: above the axes it ran into the panel's title
        top.annotate("diagnosis", (_num(diagnosed), 0.0), xycoords=("data", "axes fraction"),
                     xytext=(3, 3), textcoords="offset points", fontsize=8, ha="left",
                     va="bottom", bbox=label_box)
    evaluation_shown = x0 <= ev.at <= x1
    if not evaluation_shown:  # the axis stops early: say where the evaluation date lies
        top.annotate(f"evaluation date {ev.at.isoformat()} \u2192", (1.0, 0.0),
                     xycoords="axes fraction", xytext=(-3, 3), textcoords="offset points",
                     fontsize=8, ha="right", va="bottom", bbox=label_box)
    last = axes[-1]
    last.set_xlim(_num(x0), _num(x1))
    # the ticks once, fixed: the shared axis would otherwise find and format them again
    # in each of the nine panels every time the figure is drawn
    locator = mdates.AutoDateLocator(minticks=6, maxticks=14)
    ticks = list(locator.tick_values(datetime.combine(x0, time()), datetime.combine(x1, time())))
    ticks = [t for t in ticks if _num(x0) <= t <= _num(x1)]
    labels = mdates.ConciseDateFormatter(locator).format_ticks(ticks)
    last.xaxis.set_major_locator(FixedLocator(ticks))
    last.xaxis.set_major_formatter(FixedFormatter(labels))
    for ax in axes:
        ax.set_axisbelow(True)
        ax.grid(axis="x", color="0.88", linewidth=0.5)
        ax.tick_params(axis="x", labelbottom=ax is last)
    known = f"; as known at {ev.known_at.isoformat()}" if ev.known_at else ""
    latest = max(f.on for f in ev.facts)
    tail = "" if x1 >= ev.at else f" (nothing recorded after {latest.isoformat()})"
    # the reference only: a chart left on a printer must not name the diagnosis
    fig.suptitle(f"Course of {ev.patient}", fontsize=15, fontweight="bold")
    lines = "dash-dot line: diagnosis" if diagnosed is not None else ""
    lines += ("" if not lines else ", ") + ("dotted line: evaluation date" if evaluation_shown
                                           else "the evaluation date lies beyond the right edge")
    top.text(0.0, 1.25, f"evaluated at {ev.at.isoformat()}{tail}{known}; {lines}",
             transform=top.transAxes, fontsize=9)
    return fig


def save_chart(fig: Figure, path: str | Path) -> None:
    """Write the chart as PNG or SVG by ``path``'s suffix. SVG keeps text as text
    (searchable, accessible)."""
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in CHART_FORMATS:
        raise ValueError(f"{target.name}: only .png and .svg are supported")
    title = str(fig.get_suptitle()) if hasattr(fig, "get_suptitle") else ""
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cno-tracker"}):
        # no creation date in the SVG: the same record draws the same file
        metadata: dict[str, Any] = {"Title": title, "Date": None} if fmt == "svg" \
            else {"Title": title}
        fig.savefig(target, format=fmt, dpi=100, metadata=metadata)
