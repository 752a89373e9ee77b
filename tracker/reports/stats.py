"""Descriptive statistics the way the seed paper reports them (Methods): a quantitative
variable is shown as mean (SD) when it follows a normal distribution and as median (IQR)
when it does not, normality being judged by the Shapiro–Wilk test.

``describe(values)`` makes that choice and says why, so a report can print the test next
to each number. Pure: numbers in, a record out.

Readings (**[reading]**):

- Normality is "not rejected" when Shapiro–Wilk's p is at least ``alpha`` (0.05): then
  mean (SD). A p below ``alpha`` gives median (IQR).
- Shapiro–Wilk needs at least 3 values (``scipy.stats.shapiro``). With 1 or 2 values the
  test is not run and the median (IQR) is shown, with the reason in ``note``; with none,
  nothing is shown.
- All values equal: the test is undefined (zero range); mean (SD) is shown with SD 0 and
  the reason in ``note``.
- SD is the sample standard deviation (n - 1), as SPSS reports it.
- Quartiles use the weighted average at ``p (n + 1)`` (Hyndman–Fan type 6, numpy's
  ``weibull``), SPSS's default definition, since the seed used SPSS v22. The IQR is
  reported as one number, Q3 - Q1, as the seed's Table 4 does; Q1 and Q3 are kept too.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from scipy import stats as sp_stats

ALPHA = 0.05
MIN_SHAPIRO_N = 3

Method = Literal["mean_sd", "median_iqr", "none"]


@dataclass(frozen=True)
class Summary:
    """One quantitative variable: the chosen statistic and the test behind the choice."""

    n: int
    method: Method
    centre: float | None  # mean or median
    spread: float | None  # SD or IQR (Q3 - Q1)
    q1: float | None
    q3: float | None
    minimum: float | None
    maximum: float | None
    shapiro_w: float | None
    shapiro_p: float | None
    alpha: float
    note: str  # the choice in words: which test, what it said, what is shown

    @property
    def label(self) -> str:
        """The statistic's name as a table prints it."""
        return {"mean_sd": "mean (SD)", "median_iqr": "median (IQR)", "none": "-"}[self.method]

    def text(self, digits: int = 1) -> str:
        """``11.0 (1.6)`` style, or ``-`` when there is nothing to show."""
        if self.centre is None:
            return "-"
        if self.spread is None:
            return f"{self.centre:.{digits}f}"
        return f"{self.centre:.{digits}f} ({self.spread:.{digits}f})"

    def as_json(self) -> dict[str, Any]:
        return {"n": self.n, "method": self.method, "centre": self.centre,
                "spread": self.spread, "q1": self.q1, "q3": self.q3,
                "min": self.minimum, "max": self.maximum, "shapiro_w": self.shapiro_w,
                "shapiro_p": self.shapiro_p, "alpha": self.alpha, "note": self.note}


def quantile(values: list[float], p: float) -> float:
    """The ``p`` quantile by the weighted average at ``p (n + 1)`` (Hyndman–Fan type 6,
    SPSS's HAVERAGE, numpy's ``weibull``), clamped to the smallest and largest value."""
    xs = sorted(values)
    h = p * (len(xs) + 1)
    if h <= 1:
        return xs[0]
    if h >= len(xs):
        return xs[-1]
    k = math.floor(h)
    return xs[k - 1] + (h - k) * (xs[k] - xs[k - 1])


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(Q1, median, Q3) by the SPSS definition (type 6); the median is the usual one."""
    return quantile(values, 0.25), float(statistics.median(values)), quantile(values, 0.75)


def describe(values: Iterable[float], alpha: float = ALPHA) -> Summary:
    """Mean (SD) when Shapiro–Wilk does not reject normality at ``alpha``, else median
    (IQR); fewer than 3 values: not tested, median (IQR); none: nothing."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Summary(0, "none", None, None, None, None, None, None, None, None, alpha,
                       "no values")
    lo, hi = min(xs), max(xs)
    q1, median, q3 = quartiles(xs) if n >= 2 else (xs[0], xs[0], xs[0])
    if n < MIN_SHAPIRO_N:
        return Summary(n, "median_iqr", median, q3 - q1 if n >= 2 else None, q1, q3, lo, hi,
                       None, None, alpha,
                       f"n = {n} < {MIN_SHAPIRO_N}: Shapiro–Wilk not applicable; "
                       f"median (IQR) shown")
    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs)
    if lo == hi:
        return Summary(n, "mean_sd", mean, 0.0, q1, q3, lo, hi, None, None, alpha,
                       "all values equal: Shapiro–Wilk undefined; mean (SD) shown")
    result = sp_stats.shapiro(xs)
    w, p = float(result.statistic), float(result.pvalue)
    if p >= alpha:
        return Summary(n, "mean_sd", mean, sd, q1, q3, lo, hi, w, p, alpha,
                       f"Shapiro–Wilk W = {w:.3f}, p {_p(p)}, not below {alpha:g}: "
                       f"normality not rejected, mean (SD)")
    return Summary(n, "median_iqr", median, q3 - q1, q1, q3, lo, hi, w, p, alpha,
                   f"Shapiro–Wilk W = {w:.3f}, p {_p(p)}, below {alpha:g}: "
                   f"normality rejected, median (IQR)")


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def percent(count: int, total: int) -> float | None:
    """``count`` of ``total`` in percent, or None for an empty denominator."""
    return 100.0 * count / total if total else None


def count_text(count: int, total: int) -> str:
    """``10 (83.3)``: a count and its percentage with one decimal, as Table 4 prints it."""
    pct = percent(count, total)
    return f"{count} (-)" if pct is None else f"{count} ({pct:.1f})"
