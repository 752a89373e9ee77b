"""The staff roster: loading, line-precise errors, routing and escalation."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.channels.base import Recipient
from alerts.errors import RosterError
from alerts.roster import Roster, StaffMember, load_roster, parse_roster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "roster.toml"

STAFF_A = """\
[[staff]]
id = "nurse.a"
name = "Nurse A"
roles = ["nurse"]
phone = "+34600000001"
email = "nurse.a@example.org"
on_call = true
preferred_channel = "sms"
"""  # lines 1-8

STAFF_B = """\
[[staff]]
id = "rheum.b"
name = "Doctor B"
roles = ["rheumatologist"]
email = "rheum.b@example.org"
preferred_channel = "email"
"""  # 6 lines

ROUTING = """\
[routing]
default = ["nurse"]

[routing.severity]
urgent = ["nurse", "rheumatologist"]

[routing.kind]
dose_deviation = ["rheumatologist"]

[escalation]
chain = ["rheumatologist"]
"""


def roster_text(*parts: str) -> str:
    return "\n".join(parts)


def error_of(text: str) -> RosterError:
    with pytest.raises(RosterError) as caught:
        parse_roster(text)
    return caught.value


# ------------------------------------------------------------------ valid


def test_example_roster_loads() -> None:
    roster = load_roster(EXAMPLE)
    assert len(roster.staff) == 4
    assert roster.escalation.delay_minutes == 120
    for member in roster.staff:
        assert member.email is not None and member.email.endswith("@example.org")
        assert member.phone is None or member.phone.startswith("+3460000000")


def test_minimal_roster_and_defaults() -> None:
    roster = parse_roster(roster_text(STAFF_A, STAFF_B, ROUTING))
    assert [m.id for m in roster.staff] == ["nurse.a", "rheum.b"]
    assert roster.member("rheum.b").on_call is False
    assert roster.escalation.delay_minutes is None  # the protocol's escalation_minutes
    assert roster.member("nurse.a").recipient() == Recipient(
        "nurse.a", phone="+34600000001", email="nurse.a@example.org")
    assert roster.member("nurse.a").channels() == ("sms", "email")
    assert roster.member("rheum.b").channels() == ("email",)


def test_routing_precedence_kind_then_severity_then_default() -> None:
    roster = parse_roster(roster_text(STAFF_A, STAFF_B, ROUTING))
    ids = lambda kind, sev: [m.id for m in roster.recipients_for(kind, sev)]  # noqa: E731
    assert ids("dose_deviation", "warning") == ["rheum.b"]  # kind entry
    assert ids("dose_deviation", "urgent") == ["rheum.b"]  # kind wins over severity
    assert ids("hypocalcaemia", "urgent") == ["nurse.a", "rheum.b"]  # severity entry
    assert ids("hypocalcaemia", "info") == ["nurse.a"]  # default


def test_on_call_members_are_preferred_within_a_role() -> None:
    extra = STAFF_A.replace('"nurse.a"', '"nurse.c"').replace("on_call = true",
                                                              "on_call = false")
    roster = parse_roster(roster_text(STAFF_A, extra, STAFF_B, ROUTING))
    assert [m.id for m in roster.recipients_for("nsaid_review_due", "info")] == ["nurse.a"]
    nobody_on_call = STAFF_A.replace("on_call = true", "on_call = false")
    roster = parse_roster(roster_text(nobody_on_call, extra, STAFF_B, ROUTING))
    assert [m.id for m in roster.recipients_for("nsaid_review_due", "info")] == [
        "nurse.a", "nurse.c"]


def test_a_person_with_two_routed_roles_is_listed_once() -> None:
    both = STAFF_B.replace('["rheumatologist"]', '["nurse", "rheumatologist"]')
    roster = parse_roster(roster_text(STAFF_A.replace("on_call = true", ""), both, ROUTING))
    assert [m.id for m in roster.recipients_for("hypocalcaemia", "urgent")] == [
        "nurse.a", "rheum.b"]


def test_escalation_levels_and_next_role() -> None:
    routing = ROUTING.replace('chain = ["rheumatologist"]', 'chain = ["rheumatologist", "nurse"]')
    roster = parse_roster(roster_text(STAFF_A, STAFF_B, routing))
    assert roster.next_role(0) == "rheumatologist"
    assert roster.next_role(1) == "nurse"
    assert roster.next_role(2) is None  # end of the chain
    assert [m.id for m in roster.recipients_for("hypocalcaemia", "urgent", level=1)] == [
        "rheum.b"]
    assert [m.id for m in roster.recipients_for("hypocalcaemia", "urgent", level=2)] == [
        "nurse.a"]
    assert roster.recipients_for("hypocalcaemia", "urgent", level=3) == []
    with pytest.raises(ValueError):
        roster.next_role(-1)


def test_unknown_kind_or_severity_in_a_lookup_is_a_programming_error() -> None:
    roster = parse_roster(roster_text(STAFF_A, STAFF_B, ROUTING))
    with pytest.raises(ValueError):
        roster.recipients_for("no_such_kind", "info")
    with pytest.raises(ValueError):
        roster.recipients_for("dose_deviation", "critical")


def test_digest_and_escalation_are_routable_kinds() -> None:
    routing = ROUTING.replace('dose_deviation = ["rheumatologist"]', 'digest = ["rheumatologist"]')
    roster = parse_roster(roster_text(STAFF_A, STAFF_B, routing))
    assert [m.id for m in roster.recipients_for("digest", "info")] == ["rheum.b"]


def test_roster_built_in_code_is_validated_too() -> None:
    member = StaffMember(id="n.1", name="N", roles=("nurse",), email="n@example.org",
                         preferred_channel="email")
    with pytest.raises(ValueError, match="no staff member has it"):
        Roster(staff=(member,), routing={"default": ("pharmacist",)})


# ------------------------------------------------------------------ invalid, with lines


def test_bad_phone_names_the_phone_line_of_the_second_entry() -> None:
    bad = STAFF_B.replace('email = "rheum.b@example.org"',
                          'phone = "+34 600 000 002"\nemail = "rheum.b@example.org"')
    error = error_of(roster_text(STAFF_A, bad, ROUTING))
    # STAFF_A is lines 1-8, a blank join line 9, so the second [[staff]] is line 10
    assert error.line == 14
    assert "staff entry #2 ('rheum.b')" in error.reason and "E.164" in error.reason
    assert str(error).startswith("line 14: ")


@pytest.mark.parametrize("phone", ["600000001", "+0600000001", "+3460000000112345", "+"])
def test_e164_is_enforced(phone: str) -> None:
    error = error_of(roster_text(STAFF_A.replace("+34600000001", phone), STAFF_B, ROUTING))
    assert error.line == 5


@pytest.mark.parametrize("phone", ["+1234", "+12", "+346000000011234", "+3460000000",
                                   "+34500000001"])
def test_e164_shaped_numbers_that_do_not_exist_are_refused(phone: str) -> None:
    # E.164's shape allows 2 to 15 digits; phonenumbers knows each country's plan
    error = error_of(roster_text(STAFF_A.replace("+34600000001", phone), STAFF_B, ROUTING))
    assert error.line == 5
    assert "staff entry #1 ('nurse.a')" in error.reason
    assert "valid E.164 phone number" in error.reason


@pytest.mark.parametrize("phone", ["+34600000001", "+14155550123", "+442071838750"])
def test_real_numbers_of_several_countries_are_accepted(phone: str) -> None:
    roster = parse_roster(roster_text(STAFF_A.replace("+34600000001", phone), STAFF_B,
                                      ROUTING))
    assert roster.member("nurse.a").phone == phone


@pytest.mark.parametrize(("address", "why"), [
    ("a..b@x", "two periods in a row"),
    ("nurse.a@example", "should have a period"),
    (".nurse@example.org", "period"),
    ("nurse.a@exa_mple.org", "invalid character"),
])
def test_invalid_email_addresses_are_refused_with_the_reason(address: str, why: str) -> None:
    text = roster_text(STAFF_A.replace("nurse.a@example.org", address), STAFF_B, ROUTING)
    error = error_of(text)
    assert error.line == 6
    assert "staff entry #1 ('nurse.a')" in error.reason and "email" in error.reason
    assert why in error.reason


def test_email_validation_makes_no_dns_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the roster must validate without the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    text = roster_text(STAFF_A.replace("nurse.a@example.org", "nurse@no-such-host.example.org"),
                       STAFF_B, ROUTING)
    assert parse_roster(text).member("nurse.a").email == "nurse@no-such-host.example.org"


def test_missing_field_points_at_the_entry_header() -> None:
    no_name = STAFF_B.replace('name = "Doctor B"\n', "")
    error = error_of(roster_text(STAFF_A, no_name, ROUTING))
    assert error.line == 10
    assert "name" in error.reason


def test_sms_preference_without_phone_is_refused() -> None:
    error = error_of(roster_text(STAFF_A, STAFF_B.replace('"email"', '"sms"'), ROUTING))
    assert error.line == 10 and "needs a phone" in error.reason


def test_unknown_field_is_refused_at_its_line() -> None:
    typo = STAFF_B.replace("preferred_channel", "prefered_channel")
    error = error_of(roster_text(STAFF_A, typo, ROUTING))
    assert error.line == 15 and "prefered_channel" in error.reason


def test_duplicate_ids_are_refused_at_the_second_id() -> None:
    dup = STAFF_B.replace('"rheum.b"', '"nurse.a"')
    error = error_of(roster_text(STAFF_A, dup, ROUTING))
    assert error.line == 11 and "duplicate staff id 'nurse.a'" in error.reason


def test_unknown_role_in_routing_names_its_line() -> None:
    routing = ROUTING.replace('dose_deviation = ["rheumatologist"]',
                              'dose_deviation = ["surgeon"]')
    text = roster_text(STAFF_A, STAFF_B, routing)
    error = error_of(text)
    assert text.splitlines()[error.line - 1].startswith("dose_deviation")  # type: ignore[operator]
    assert "'surgeon'" in error.reason


def test_unknown_role_in_escalation_chain_names_its_line() -> None:
    routing = ROUTING.replace('chain = ["rheumatologist"]', 'chain = ["pharmacist"]')
    text = roster_text(STAFF_A, STAFF_B, routing)
    error = error_of(text)
    assert text.splitlines()[error.line - 1].startswith("chain")  # type: ignore[operator]


def test_unknown_kind_and_severity_keys_are_refused() -> None:
    text = roster_text(STAFF_A, STAFF_B, ROUTING.replace("dose_deviation =", "dose_deviaton ="))
    error = error_of(text)
    assert "dose_deviaton" in error.reason
    assert text.splitlines()[error.line - 1].startswith("dose_deviaton")  # type: ignore[operator]
    error = error_of(roster_text(STAFF_A, STAFF_B, ROUTING.replace("urgent =", "critical =")))
    assert error.line is not None


def test_every_severity_must_be_routable() -> None:
    routing = ROUTING.replace('default = ["nurse"]\n', "")
    error = error_of(roster_text(STAFF_A, STAFF_B, routing))
    assert "'info' is not routed" in error.reason
    assert error.line == 17  # the [routing] header


def test_escalation_delay_must_be_positive() -> None:
    routing = ROUTING + "delay_minutes = 0\n"
    error = error_of(roster_text(STAFF_A, STAFF_B, routing))
    assert "delay_minutes" in error.reason


def test_toml_syntax_error_keeps_the_parser_line() -> None:
    error = error_of(roster_text(STAFF_A, 'oops = [\n', ROUTING))
    assert error.line is not None and error.line >= 10
    assert error.reason.startswith("not valid TOML")


def test_no_staff_or_no_routing() -> None:
    assert "[[staff]]" in error_of(ROUTING).reason
    assert "[routing]" in error_of(STAFF_A).reason


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RosterError) as caught:
        load_roster(tmp_path / "missing.toml")
    assert caught.value.line is None
