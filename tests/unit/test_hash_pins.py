"""The content and chain hashes are pinned: stored chains (and seals) must keep verifying
whatever way the hashes are computed."""

from __future__ import annotations

from datetime import UTC, date, datetime

from events.envelope import GENESIS, chain_hash, content_hash

T = datetime(2015, 3, 4, 7, 10, tzinfo=UTC)
DATA = b'{"analyte":"calcium"}'


def test_content_hash_is_pinned() -> None:
    assert content_hash("LabResultRecorded", "P0001", T, DATA) == (
        "f4e60541aa9e20f72b15d942ccc61fd2ef3c1118dcc387589fb388427cef8a8c")


def test_chain_hash_is_pinned() -> None:
    assert chain_hash(GENESIS, event_id="e1", stream="P0001", version=1,
                      event_type="LabResultRecorded", schema_version=1, occurred_at=T,
                      occurred_on=date(2015, 3, 4), recorded_at=T, recorded_by="import",
                      idempotency_key=None, data_json=DATA) == (
        "ec6d94ae029daa02b4c2d51ca193f653ee080ce58eeb8c3007c5e94bc480822b")
