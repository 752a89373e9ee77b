"""bench.store keeps the fastest of its alternating read rounds, with the first round's
memory figures (only the first round is traced), and parses --read-rounds."""

from __future__ import annotations

import pytest

from bench.store_options import Result, faster, parse_args


def _read(seconds: float, note: str, peak: float) -> Result:
    return Result("read", "sqlite", "ours", 50_000, seconds, note, {"tracemalloc_mib": peak})


def test_the_first_round_is_kept_when_nothing_came_before() -> None:
    first = _read(1.0, "traced", 3.7)
    assert faster(None, first) is first


def test_a_slower_round_changes_nothing() -> None:
    first = _read(1.0, "traced", 3.7)
    assert faster(first, _read(1.2, "untraced", -1.0)) is first
    assert faster(first, _read(1.0, "untraced", -1.0)) is first  # a tie keeps the first


def test_a_faster_round_gives_its_time_and_keeps_the_first_rounds_memory() -> None:
    kept = faster(_read(1.0, "traced", 3.7), _read(0.8, "untraced", -1.0))
    assert kept.seconds == 0.8
    assert (kept.note, kept.extra) == ("traced", {"tracemalloc_mib": 3.7})


def test_rounds_default_to_three_and_to_one_when_quick() -> None:
    assert parse_args([])[0].read_rounds == 3
    assert parse_args(["--quick"])[0].read_rounds == 1
    assert parse_args(["--read-rounds", "5"])[0].read_rounds == 5


def test_fewer_than_one_round_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--read-rounds", "0"])
    assert exit_.value.code == 2
    assert "--read-rounds must be at least 1" in capsys.readouterr().err
