"""The course chart's labels, measured on the rendered figure: the diagnosis label stays
clear of the first panel's title, and the evaluation date is shown as a dotted line when
it is on the axis and as a labelled pointer at the right edge when the axis stops early."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from events.store import EventStore
from events.store.engine import make_engine
from tests.integration.test_reports import _generated_pamidronate_patient, load
from tracker import db
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.reports.chart import course_chart
from tracker.status import Evaluation, evaluate


def _evaluation(tmp_path: Path, at: date) -> Evaluation:
    url = f"sqlite:///{tmp_path / 'chart.db'}"
    if not (tmp_path / "chart.db").exists():
        db.upgrade(url)
        load(url, _generated_pamidronate_patient()[2])
    patient = _generated_pamidronate_patient()[0]
    engine = make_engine(url)
    try:
        events = EventStore(engine).read_stream(patient)
    finally:
        engine.dispose()
    return evaluate(patient, events, at=at, known_at=None, protocol=DEFAULT_PROTOCOL)


def _drawn(ev: Evaluation) -> Figure:
    fig = course_chart(ev)
    FigureCanvasAgg(fig).draw()
    return fig


def _texts(fig: Figure) -> dict[str, Text]:
    return {t.get_text(): t for t in fig.axes[0].findobj(Text) if t.get_text()}


def _dotted_at(fig: Figure, day: date) -> bool:
    from matplotlib import dates as mdates

    x = mdates.date2num(day)
    return any(line.get_linestyle() == ":" and list(line.get_xdata()) == [x, x]
               for line in fig.axes[0].findobj(Line2D))


def test_the_diagnosis_label_does_not_overprint_the_panel_title(tmp_path: Path) -> None:
    fig = _drawn(_evaluation(tmp_path, date(2019, 6, 30)))
    texts = _texts(fig)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    title = fig.axes[0].title if fig.axes[0].get_title() else fig.axes[0]._left_title
    assert title.get_text() == "Disease state"
    label = texts["diagnosis"].get_window_extent(renderer)
    assert not label.overlaps(title.get_window_extent(renderer))
    assert fig.axes[0].get_window_extent(renderer).contains(label.x0, label.y0)


def test_the_evaluation_date_on_the_axis_is_a_dotted_line(tmp_path: Path) -> None:
    last = max(f.on for f in _evaluation(tmp_path, date(2019, 6, 30)).facts)
    at = last + timedelta(days=30)  # within the 180 days the axis runs past the last event
    fig = _drawn(_evaluation(tmp_path, at))
    assert _dotted_at(fig, at)
    subtitle = next(t for t in _texts(fig) if t.startswith("evaluated at"))
    assert subtitle.endswith("dotted line: evaluation date")
    assert not any(t.startswith("evaluation date") for t in _texts(fig))


def test_an_evaluation_date_beyond_the_axis_is_pointed_to(tmp_path: Path) -> None:
    at = date(2026, 12, 1)  # years after the last event: the axis stops 180 days after it
    fig = _drawn(_evaluation(tmp_path, at))
    assert not _dotted_at(fig, at)
    texts = _texts(fig)
    assert "evaluation date 2026-12-01 \u2192" in texts
    subtitle = next(t for t in texts if t.startswith("evaluated at 2026-12-01"))
    assert "nothing recorded after" in subtitle
    assert subtitle.endswith("the evaluation date lies beyond the right edge")
    assert "dotted line" not in subtitle
