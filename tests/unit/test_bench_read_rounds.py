"""bench.store keeps the fastest of its alternating read rounds, with the first round's
memory figures (only the first round is traced), and parses --read-rounds and
--append-rounds."""

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


def test_append_rounds_default_to_three_and_to_one_when_quick() -> None:
    assert parse_args([])[0].append_rounds == 3
    assert parse_args(["--quick"])[0].append_rounds == 1
    assert parse_args(["--append-rounds", "2"])[0].append_rounds == 2


def test_the_faster_of_two_append_rounds_is_kept() -> None:
    slow = Result("append x1", "sqlite", "ours", 3000, 0.20, "1 event per transaction")
    fast = Result("append x1", "sqlite", "ours", 3000, 0.15, "1 event per transaction")
    assert faster(faster(None, slow), fast).seconds == 0.15
    assert faster(faster(None, fast), slow) is fast


@pytest.mark.parametrize("flag", ["--read-rounds", "--append-rounds"])
def test_fewer_than_one_round_is_refused(flag: str, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args([flag, "0"])
    assert exit_.value.code == 2
    assert f"{flag} must be at least 1" in capsys.readouterr().err
