"""The course chart as inline SVG, cached by stream version.

matplotlib writes its SVG with ``style`` attributes and a ``<style>`` element, which the
strict Content-Security-Policy (no inline style) would switch off; :func:`csp_safe` turns
each declaration into the equivalent SVG presentation attribute, so the chart draws the
same under the policy. matplotlib's SVG is large (a hatch tile alone can be 250 KB) and
compresses many times over, so the cache also keeps it gzipped for browsers that accept
it (only this fragment is compressed: it holds no secret and nothing the user typed, so
compression cannot leak a token). The cache key is (patient, stream version, clinical
date, known-at, protocol fingerprint): an unchanged chart is never drawn twice; the cache
is bounded, so memory stays flat."""

from __future__ import annotations

import gzip
import io
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from tracker.status import Evaluation

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

ChartKey = tuple[str, int, date, datetime | None, str]


def csp_safe(svg: str, *, label: str) -> str:
    """The SVG without inline styles (as presentation attributes), with an accessible
    name, ready to sit inside an HTML page."""
    root = ET.fromstring(svg)
    for parent in root.iter():
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}style", f"{{{SVG_NS}}}metadata"):
                parent.remove(child)
    for element in root.iter():
        style = element.attrib.pop("style", None)
        if style:
            for declaration in style.split(";"):
                name, sep, value = declaration.partition(":")
                if sep and name.strip():
                    element.set(name.strip(), value.strip())
    root.set("role", "img")
    root.set("aria-label", label)
    root.set("class", "chart")
    for size in ("width", "height"):
        root.attrib.pop(size, None)
    return ET.tostring(root, encoding="unicode")


def chart_svg(ev: Evaluation) -> str:
    from tracker.reports.chart import course_chart

    fig = course_chart(ev)
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    return csp_safe(buf.getvalue(), label=f"Course chart of {ev.patient} at {ev.at}")


@dataclass(frozen=True)
class Chart:
    html: str  # the <figure> with the inline SVG
    gzipped: bytes


def chart_of(svg: str) -> Chart:
    html = f'<figure class="chart">{svg}</figure>'
    return Chart(html, gzip.compress(html.encode(), compresslevel=6))


class ChartCache:
    def __init__(self, max_entries: int = 256,
                 draw: Callable[[Evaluation], str] = chart_svg) -> None:
        self.max_entries = max_entries
        self.draw = draw
        self.drawn = 0  # how many charts were drawn (the cache's misses)
        self._entries: OrderedDict[ChartKey, Chart] = OrderedDict()
        self._lock = threading.Lock()
        self._drawing = threading.Lock()  # matplotlib draws one figure at a time

    def get(self, key: ChartKey, evaluation: Callable[[], Evaluation]) -> Chart:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        with self._drawing:
            chart = chart_of(self.draw(evaluation()))
            self.drawn += 1
        with self._lock:
            self._entries[key] = chart
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return chart
