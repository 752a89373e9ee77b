"""``hl7 listen`` over a real MLLP socket on loopback: acks, resends, several connections,
timeouts, malformed frames, and no PHI in the log. Both databases."""

from __future__ import annotations

import functools
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hl7.client import MLLPClient

from tests.support.interop import DATA, PHI, events, ingest_for, messages
from tests.support.mllp import listening
from tracker.interop.codes import load_code_map
from tracker.interop.hl7_in import receive_many

CODE_MAP = load_code_map(DATA / "eu-lab-codes.toml")


@pytest.fixture
def handle(db_url: str):  # type: ignore[no-untyped-def]
    ingest, app = ingest_for(db_url)
    yield functools.partial(receive_many, ingest=ingest, code_map=CODE_MAP)
    app.close()


def msa(ack: bytes) -> str:
    return next(s for s in ack.decode().split("\r") if s.startswith("MSA")).split("|")[1]


def test_ack_resend_and_error(db_url: str, handle, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    first, second = messages("eu-lab-iso8859.hl7")
    with listening(handle) as (port, listener), MLLPClient("127.0.0.1", port) as client:
        assert msa(client.send_message(first)) == "AA"
        n = len(events(db_url))
        assert msa(client.send_message(first)) == "AA"      # resent: acknowledged ...
        assert len(events(db_url)) == n                     # ... not stored twice
        assert msa(client.send_message(second)) == "AA"     # the correction
        bad = first.replace(b"|45|", b"|99999|").replace(b"UKK000101", b"UKK000201")
        ack = client.send_message(bad)
        assert msa(ack) == "AE" and b"ERR||OBX^2^5|" in ack
    assert [e.type for e in events(db_url)].count("EntryCorrected") == 1
    assert listener.stats.accepted == 3 and listener.stats.errors == 1
    assert "message UKK000101 from LABOR: AA" in caplog.text
    for phi in PHI:
        assert phi not in caplog.text, phi


def test_malformed_frames_are_survived(handle) -> None:  # type: ignore[no-untyped-def]
    first, _ = messages("eu-lab-iso8859.hl7")
    with listening(handle) as (port, listener):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"no start block\x1c\r")
            assert b"MSA|AR|" in s.recv(65536)
            s.sendall(b"\x0bnot hl7 at all\x1c\r")
            assert b"MSA|AR|" in s.recv(65536)
            s.sendall(b"\x0b" + first + b"\x1c\r")       # the same connection reads on
            assert b"MSA|AA|UKK000101" in s.recv(65536)
        assert listener.stats.bad_frames == 1 and listener.stats.rejected == 1


def test_slow_connections_time_out(handle) -> None:  # type: ignore[no-untyped-def]
    first, _ = messages("eu-lab-iso8859.hl7")
    with listening(handle, idle_timeout=0.5) as (port, listener):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"\x0b" + first[:40])               # half a frame, then silence
            started = time.monotonic()
            assert s.recv(65536) == b""                   # the server closed it
            assert 0.3 < time.monotonic() - started < 4
        assert listener.stats.timeouts == 1
        with MLLPClient("127.0.0.1", port) as client:     # and still serves others
            assert msa(client.send_message(first)) == "AA"


def test_several_connections_at_once(db_url: str, handle) -> None:  # type: ignore[no-untyped-def]
    first, _ = messages("eu-lab-iso8859.hl7")

    def sender(n: int) -> list[str]:
        out = []
        with MLLPClient("127.0.0.1", port) as client:
            for i in range(5):
                m = (first.replace(b"UKK000101", f"C{n}M{i}".encode())
                     .replace(b"4711-0815", f"4711-{n}".encode())
                     .replace(b"|A778|L990|", f"|A{n}{i}|L{n}{i}|".encode()))
                out.append(msa(client.send_message(m)))
        return out

    with listening(handle) as (port, listener), ThreadPoolExecutor(4) as pool:
        acks = [a for batch in pool.map(sender, range(4)) for a in batch]
    assert acks == ["AA"] * 20
    assert listener.stats.connections == 4
    labs = [e for e in events(db_url) if e.type == "LabResultRecorded"]
    assert len(labs) == 20 * 2   # calcium and creatinine of each message
    assert len({e.stream for e in labs}) == 4


def test_spm17_collection_time_wins(db_url: str, handle) -> None:  # type: ignore[no-untyped-def]
    first, _ = messages("eu-lab-iso8859.hl7")
    segment = b"SPM|1|||BLD^Blood^HL70487|||||||||||||20250303070500+0100"
    spm = first.replace(b"\rNTE|", b"\r" + segment + b"\rNTE|")
    [got] = handle([spm])
    assert got.code == "AA", got.log
    calcium = next(e for e in events(db_url) if getattr(e.data, "analyte", "") == "calcium")
    assert calcium.occurred_at.isoformat() == "2025-03-03T06:05:00+00:00"


def test_listen_command_refuses_without_key(db_url: str, tmp_path: Path) -> None:
    from tests.support.interop import cli

    r = cli(db_url, "hl7", "listen", "--port", "0", key=None)
    assert r.exit_code == 5 and "CNO_TRACKER_LINK_KEY" in r.output
