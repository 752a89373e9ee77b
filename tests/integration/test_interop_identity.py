"""The identity link table and ``cno-tracker patients``: keyed look-ups, sealed values,
erasure, and exit 5 without a key. Both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events.store.engine import make_engine
from tests.support.interop import LINK_KEY, cli, dump
from tracker.errors import CommandRefused, ConfigurationError
from tracker.interop.identity import (
    LinkTable,
    fresh_reference,
    link_key_from_env,
)

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def test_link_find_unlink(db_url: str) -> None:
    r = cli(db_url, "patients", "link", "P0007", "--system", "urn:mrn", "--value", "MRN-448812")
    assert r.exit_code == 0, r.output
    assert "linked one identifier to P0007" in r.output
    r = cli(db_url, "patients", "find", "--system", "urn:mrn", "--value", "MRN-448812")
    assert (r.exit_code, r.output.strip()) == (0, "P0007")
    assert "MRN-448812" not in dump(db_url)
    r = cli(db_url, "patients", "unlink", "P0007")
    assert r.exit_code == 0 and "erased 1 link(s)" in r.output
    r = cli(db_url, "patients", "find", "--system", "urn:mrn", "--value", "MRN-448812")
    assert r.exit_code == 4
    assert "no patient is linked" in r.output
    assert cli(db_url, "patients", "unlink", "P0007").exit_code == 4


def test_link_refuses_a_name_and_an_identifier_of_another_patient(db_url: str) -> None:
    r = cli(db_url, "patients", "link", "Garcia", "--system", "s", "--value", "v1")
    assert r.exit_code == 2 and "looks like a name" in r.output
    assert cli(db_url, "patients", "link", "P1", "--system", "s", "--value", "v1").exit_code == 0
    r = cli(db_url, "patients", "link", "P2", "--system", "s", "--value", "v1")
    assert r.exit_code == 2 and "already linked to another patient" in r.output
    assert "v1" not in r.output.replace("v1 ", "")  # the value is never echoed


@pytest.mark.parametrize("key", [None, "short"])
def test_missing_or_weak_key_is_a_configuration_error(db_url: str, key: str | None) -> None:
    r = cli(db_url, "patients", "find", "--system", "s", "--value", "v", key=key)
    assert r.exit_code == 5
    assert "CNO_TRACKER_LINK_KEY" in r.output
    assert "Traceback" not in r.output


def test_sealed_value_opens_only_with_the_key(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        table = LinkTable(engine, link_key_from_env({"CNO_TRACKER_LINK_KEY": LINK_KEY}))
        table.link("P0009", [("urn:mrn", "A-1"), ("urn:other", "B-2")], NOW)
        assert {(x.system, x.value) for x in table.links_of("P0009")} == {
            ("urn:mrn", "A-1"), ("urn:other", "B-2")}
        other = LinkTable(engine, link_key_from_env({"CNO_TRACKER_LINK_KEY": "x" * 40}))
        assert other.find("urn:mrn", "A-1") is None  # another key finds nothing
        with pytest.raises(CommandRefused):
            table.link("P0010", [("urn:mrn", "A-1")], NOW)
    finally:
        engine.dispose()


def test_fresh_references_follow_the_reference_rules() -> None:
    from events.vocabulary.common import check_patient_ref

    refs = {fresh_reference() for _ in range(200)}
    assert len(refs) == 200
    for ref in refs:
        assert check_patient_ref(ref) == ref


def test_key_from_env_without_value() -> None:
    with pytest.raises(ConfigurationError):
        link_key_from_env({})


def test_find_with_versions_gives_each_linked_patient_its_stream_version(db_url: str) -> None:
    from events.store import EventStore
    from tests.support.events import enrol, visit

    engine = make_engine(db_url)
    try:
        table = LinkTable(engine, link_key_from_env({"CNO_TRACKER_LINK_KEY": LINK_KEY}))
        table.link("P0009", [("urn:mrn", "A-1")], NOW)
        table.link("P0010", [("urn:mrn", "A-2")], NOW)
        EventStore(engine).append("P0009", 0, [enrol(), visit()])
        found = table.find_with_versions([("urn:mrn", "A-1"), ("urn:mrn", "A-2"),
                                          ("urn:mrn", "A-3")])
        assert found == {("urn:mrn", "A-1"): ("P0009", 2), ("urn:mrn", "A-2"): ("P0010", 0)}
        assert table.find_with_versions([]) == {}
    finally:
        engine.dispose()
