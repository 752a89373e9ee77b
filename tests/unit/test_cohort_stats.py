"""The seed's choice of statistic: mean (SD) when Shapiro–Wilk does not reject normality at
0.05, else median (IQR); fewer than 3 values are not tested."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats as sp_stats

from tracker.reports.stats import count_text, describe, percent, quantile, quartiles

# Normal quantiles: as normal as 12 numbers get (W close to 1).
NORMAL = [11.0 + 1.6 * NormalDist().inv_cdf((i - 0.5) / 12) for i in range(1, 13)]
# The seed's CRP shape: median 18.1, range 3.8-235, a long right tail.
SKEWED = [3.8, 5.0, 6.0, 8.0, 12.0, 17.0, 19.2, 30.0, 50.0, 56.0, 110.0, 235.0]


def test_normal_sample_gives_mean_and_sd() -> None:
    s = describe(NORMAL)
    assert s.method == "mean_sd" and s.label == "mean (SD)"
    assert s.centre == pytest.approx(11.0)
    assert s.spread == pytest.approx(np.std(NORMAL, ddof=1))  # sample SD, n - 1
    assert s.shapiro_p is not None and s.shapiro_p >= 0.05
    assert s.text() == f"11.0 ({np.std(NORMAL, ddof=1):.1f})"
    assert "Shapiro–Wilk" in s.note and "normality not rejected" in s.note


def test_skewed_sample_gives_median_and_iqr() -> None:
    s = describe(SKEWED)
    assert s.method == "median_iqr" and s.label == "median (IQR)"
    assert s.shapiro_p is not None and s.shapiro_p < 0.05
    assert (s.q1, s.centre, s.q3) == pytest.approx((6.5, 18.1, 54.5))
    assert s.text() == "18.1 (48.0)"
    assert "normality rejected" in s.note and "p < 0.001" in s.note


def test_the_choice_flips_exactly_at_alpha() -> None:
    p = float(sp_stats.shapiro(SKEWED).pvalue)
    assert describe(SKEWED, alpha=p).method == "mean_sd"  # p = alpha: not rejected
    assert describe(SKEWED, alpha=math.nextafter(p, 1.0)).method == "median_iqr"
    assert describe(SKEWED, alpha=math.nextafter(p, 0.0)).method == "mean_sd"


@pytest.mark.parametrize("values", [[4.0], [4.0, 9.0]])
def test_fewer_than_three_values_are_not_tested(values: list[float]) -> None:
    s = describe(values)
    assert s.n == len(values)
    assert s.method == "median_iqr" and s.shapiro_w is None and s.shapiro_p is None
    assert f"n = {len(values)} < 3" in s.note and "not applicable" in s.note
    assert s.centre == pytest.approx(sum(values) / len(values))


def test_two_values_show_their_spread_one_value_shows_itself() -> None:
    assert describe([4.0, 9.0]).text() == "6.5 (5.0)"
    assert describe([4.0]).text() == "4.0"


def test_three_values_are_tested() -> None:
    s = describe([1.0, 2.0, 4.0])
    assert s.shapiro_w is not None and s.method in ("mean_sd", "median_iqr")


def test_no_values_shows_nothing() -> None:
    s = describe([])
    assert s.method == "none" and s.text() == "-" and s.note == "no values"


def test_nan_is_dropped() -> None:
    assert describe([1.0, float("nan"), 2.0]).n == 2


def test_equal_values_are_not_tested_and_have_zero_sd() -> None:
    s = describe([5.0, 5.0, 5.0, 5.0])
    assert s.method == "mean_sd" and s.spread == 0.0 and s.shapiro_p is None
    assert "all values equal" in s.note
    assert s.text() == "5.0 (0.0)"


def test_quartiles_are_spss_type_6() -> None:
    assert quartiles(SKEWED) == pytest.approx(
        (6.5, 18.1, 54.5))
    assert list(np.percentile(SKEWED, [25, 75], method="weibull")) == pytest.approx([6.5, 54.5])
    # p (n + 1) outside 1..n clamps to the extremes
    assert quantile([5.0, 7.0], 0.25) == 5.0 and quantile([5.0, 7.0], 0.75) == 7.0
    assert quantile([1.0, 2.0, 3.0], 0.5) == 2.0


def test_counts_print_like_table_4() -> None:
    assert count_text(10, 12) == "10 (83.3)"
    assert count_text(19, 37) == "19 (51.4)"
    assert count_text(12, 12) == "12 (100.0)"
    assert count_text(0, 0) == "0 (-)"
    assert percent(1, 0) is None
