"""On-call schedules in the roster: weekly rotations, date ranges and overrides in the
centre's zone (Europe/Madrid), checked at exact instants before / on / after a rotation
boundary, across midnight and across both daylight-saving changes of 2026 (29 March:
02:00 CET → 03:00 CEST; 25 October: 03:00 CEST → 02:00 CET)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from alerts.errors import RosterError
from alerts.roster import Roster, parse_roster

ZONE = ZoneInfo("Europe/Madrid")
SECOND = timedelta(seconds=1)
STAFF = "\n".join(f"""
[[staff]]
id = "{sid}"
name = "Person {sid}"
roles = {roles}
phone = "+3460000000{n}"
{"on_call = true" if sid == "nurse.flag" else ""}
preferred_channel = "sms"
""" for n, (sid, roles) in enumerate([
    ("nurse.a", '["nurse"]'), ("nurse.b", '["nurse"]'), ("nurse.night", '["nurse"]'),
    ("nurse.flag", '["nurse"]'), ("cons.x", '["consultant"]'), ("cons.y", '["consultant"]'),
    ("cons.cover", '["consultant"]')], start=1))
SCHEDULE = """
[[rotation]]                       # Mondays 08:00 local, a then b
role = "nurse"
start = 2026-03-23T08:00:00
members = ["nurse.a", "nurse.b"]

[[shift]]                          # Saturday night across midnight and the spring change
role = "nurse"
member = "nurse.night"
start = 2026-03-28T20:00:00
end = 2026-03-29T08:00:00

[[rotation]]                       # consultants: daily turns from 2026-10-20 09:00
role = "consultant"
start = 2026-10-20T09:00:00
every_days = 1
members = ["cons.x", "cons.y"]

[[override]]                       # the autumn repeated hour, covered by someone else
role = "consultant"
member = "cons.cover"
start = 2026-10-25T02:00:00
end = 2026-10-25T03:00:00
"""
ROUTING = """
[routing]
default = ["nurse"]
[routing.severity]
urgent = ["consultant"]
"""


def roster(schedule: str = SCHEDULE) -> Roster:
    return parse_roster(STAFF + ROUTING + schedule)


def on_call(r: Roster, role: str, at: datetime) -> list[str]:
    return [m.id for m in r.members_with(role, at, ZONE)]


R = roster()


@pytest.mark.parametrize(("at", "who"), [
    # the weekly turn changes Monday 30 March 08:00 CEST = 06:00 UTC
    (datetime(2026, 3, 30, 6, 0, tzinfo=UTC) - SECOND, ["nurse.a"]),
    (datetime(2026, 3, 30, 6, 0, tzinfo=UTC), ["nurse.b"]),
    (datetime(2026, 3, 30, 6, 0, tzinfo=UTC) + SECOND, ["nurse.b"]),
    # after the autumn change the same wall-clock boundary is 07:00 UTC (turn 31: b)
    (datetime(2026, 10, 26, 7, 0, tzinfo=UTC) - SECOND, ["nurse.a"]),
    (datetime(2026, 10, 26, 7, 0, tzinfo=UTC), ["nurse.b"]),
])
def test_weekly_rotation_turns_at_local_wall_clock_time(at: datetime, who: list[str]) -> None:
    assert on_call(R, "nurse", at) == who


@pytest.mark.parametrize(("at", "who"), [
    # Saturday 28 March 20:00 CET = 19:00 UTC
    (datetime(2026, 3, 28, 19, 0, tzinfo=UTC) - SECOND, ["nurse.a"]),
    (datetime(2026, 3, 28, 19, 0, tzinfo=UTC), ["nurse.night"]),
    # local midnight (23:00 UTC), then the spring change (02:00 CET → 03:00 CEST at 01:00 UTC)
    (datetime(2026, 3, 28, 23, 0, tzinfo=UTC) - SECOND, ["nurse.night"]),
    (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), ["nurse.night"]),
    (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), ["nurse.night"]),
    # Sunday 08:00 CEST = 06:00 UTC: an 11-hour night, back to the rotation
    (datetime(2026, 3, 29, 6, 0, tzinfo=UTC) - SECOND, ["nurse.night"]),
    (datetime(2026, 3, 29, 6, 0, tzinfo=UTC), ["nurse.a"]),
])
def test_a_shift_across_midnight_and_the_spring_change(at: datetime, who: list[str]) -> None:
    assert on_call(R, "nurse", at) == who


@pytest.mark.parametrize(("at", "who"), [
    # 25 October: 02:00-03:00 local happens twice (00:00-01:00 and 01:00-02:00 UTC)
    (datetime(2026, 10, 25, 0, 0, tzinfo=UTC) - SECOND, ["cons.x"]),  # 01:59:59 CEST
    (datetime(2026, 10, 25, 0, 0, tzinfo=UTC), ["cons.cover"]),  # 02:00 CEST
    (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), ["cons.cover"]),  # 02:30 CET, again
    (datetime(2026, 10, 25, 2, 0, tzinfo=UTC) - SECOND, ["cons.cover"]),
    (datetime(2026, 10, 25, 2, 0, tzinfo=UTC), ["cons.x"]),  # 03:00 CET
    # the daily turn still changes at 09:00 local: 08:00 UTC after the change
    (datetime(2026, 10, 25, 8, 0, tzinfo=UTC) - SECOND, ["cons.x"]),
    (datetime(2026, 10, 25, 8, 0, tzinfo=UTC), ["cons.y"]),
])
def test_an_override_in_the_autumn_repeated_hour(at: datetime, who: list[str]) -> None:
    assert on_call(R, "consultant", at) == who


def test_unscheduled_times_and_roles_fall_back_to_the_on_call_flags() -> None:
    before = datetime(2026, 3, 23, 7, 0, tzinfo=UTC) - SECOND  # before the first turn
    assert on_call(R, "nurse", before) == ["nurse.flag"]
    assert on_call(R, "nurse", datetime(2026, 3, 23, 7, 0, tzinfo=UTC)) == ["nurse.a"]
    # no instant: the flags, as before schedules existed
    assert [m.id for m in R.members_with("nurse")] == ["nurse.flag"]
    assert [m.id for m in R.members_with("consultant")] == ["cons.x", "cons.y", "cons.cover"]


def test_routes_follow_the_schedule_and_skip_sms_for_who_replied_stop() -> None:
    [route] = R.routes("hypocalcaemia", "urgent", 0, {"sms", "email"},
                       at=datetime(2026, 10, 21, 8, 0, tzinfo=UTC), zone=ZONE)
    assert (route.recipient, route.channel) == ("cons.y", "sms")
    at = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    [route] = R.routes("baseline_labs_due", "info", 0, {"sms", "console"}, at=at,
                       zone=ZONE, sms_off={"nurse.b"})
    assert (route.recipient, route.channel) == ("nurse.b", "console")


def test_the_alert_instant_not_the_wall_clock_decides() -> None:
    # freezegun moves the wall clock; routing uses the instant it is given
    with freeze_time("2026-03-30T05:00:00Z"):
        at = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
        assert on_call(R, "nurse", at) == ["nurse.b"]
        assert on_call(R, "nurse", datetime.now(UTC)) == ["nurse.a"]


@pytest.mark.parametrize(("schedule", "line", "reason"), [
    ('[[rotation]]\nrole = "nurse"\nstart = 2026-03-23T08:00:00+01:00\nmembers = ["nurse.a"]',
     3, "without an offset"),
    ('[[rotation]]\nrole = "nurse"\nstart = 2026-03-23\nmembers = ["nurse.a", "cons.x"]',
     4, "'cons.x' does not hold the role 'nurse'"),
    ('[[rotation]]\nrole = "nurse"\nstart = 2026-03-23\nmembers = ["nobody"]',
     4, "'nobody' is not a staff id"),
    ('[[shift]]\nrole = "surgeon"\nmember = "nurse.a"\nstart = 2026-03-23\nend = 2026-03-24',
     2, "role 'surgeon' is scheduled but no staff member has it"),
    ('[[override]]\nrole = "nurse"\nmember = "nurse.a"\nstart = 2026-03-24\nend = 2026-03-23',
     1, "end must be after start"),
    ('[[rotation]]\nrole = "nurse"\nstart = 2026-03-23\nmembers = []', 4, "members"),
])
def test_invalid_schedule_entries_name_their_line(schedule: str, line: int,
                                                  reason: str) -> None:
    base = len((STAFF + ROUTING).splitlines())
    with pytest.raises(RosterError) as caught:
        roster("\n" + schedule)
    assert reason in str(caught.value)
    assert caught.value.line == base + 1 + line


def test_the_roster_owner_must_be_on_the_roster() -> None:
    with pytest.raises(RosterError, match="owner 'nobody' is not a staff id"):
        parse_roster('owner = "nobody"\n' + STAFF + ROUTING)
    assert parse_roster('owner = "nurse.a"\n' + STAFF + ROUTING).owner == "nurse.a"


def test_the_example_roster_without_a_schedule_still_loads() -> None:
    from pathlib import Path

    from alerts.roster import load_roster

    example = load_roster(Path(__file__).resolve().parents[2] / "examples" / "roster.toml")
    assert not example.schedule and example.owner is None


def test_the_on_call_example_roster_loads_and_schedules() -> None:
    from pathlib import Path

    from alerts.roster import load_roster

    example = load_roster(Path(__file__).resolve().parents[2] / "examples"
                          / "roster-oncall.toml")
    assert example.owner == "nurse.lopez"
    # Christmas Eve 22:00 local (21:00 UTC): the shift, not the rotation
    assert on_call(example, "nurse", datetime(2026, 12, 24, 21, 0, tzinfo=UTC)) == [
        "nurse.perez"]
    assert on_call(example, "on_call_consultant",
                   datetime(2027, 1, 1, 12, 0, tzinfo=UTC)) == ["consult.sanz"]
