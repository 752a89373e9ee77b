"""Staff accounts on SQLite and PostgreSQL: argon2id hashes kept out of the log, history
as events in the account's own stream, lock-out after 5 failures for exactly 15 minutes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from events.store import EventStore
from events.store.engine import make_engine
from tracker.account_tables import accounts as A
from tracker.accounts import (
    LOCK_FOR,
    AccountExists,
    Accounts,
    LoginRefused,
)
from tracker.clock import FixedClock
from tracker.errors import CommandRefused, NotFound
from tracker.readmodel import is_patient_stream

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GOOD = "correct horse battery"
#: cheap argon2id parameters: the tests check behaviour, not the cost
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def accounts(db_url: str, clock: FixedClock) -> Iterator[Accounts]:
    engine = make_engine(db_url)
    yield Accounts(engine, EventStore(engine), clock, hasher=FAST,
                   member_exists={"nurse.lopez", "dr.ruiz"}.__contains__)
    engine.dispose()


def test_an_account_is_created_with_its_history_in_its_own_stream(accounts: Accounts) -> None:
    a = accounts.add("dr.ruiz", "clinician", GOOD, member="dr.ruiz", by="admin")
    assert (a.username, a.role, a.member, a.disabled) == ("dr.ruiz", "clinician", "dr.ruiz",
                                                          False)
    events = accounts.store.read_stream("account:dr.ruiz")
    assert [e.type for e in events] == ["AccountCreated"]
    assert events[0].recorded_by == "admin"
    assert not is_patient_stream("account:dr.ruiz")
    assert accounts.store.verify() == []


def test_no_password_and_no_hash_enters_the_log(accounts: Accounts) -> None:
    accounts.add("dr.ruiz", "clinician", GOOD, by="admin")
    accounts.set_password("dr.ruiz", "another long secret", by="admin")
    payloads = " ".join(e.payload for e in accounts.store.read_stream("account:dr.ruiz"))
    assert "argon2" not in payloads and GOOD not in payloads and "secret" not in payloads
    with accounts.engine.connect() as conn:
        digest = conn.execute(select(A.c.password_hash)).scalar_one()
    assert digest.startswith("$argon2id$")


def test_the_default_hasher_is_argon2id(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        accounts = Accounts(engine, EventStore(engine), FixedClock(T0))
        assert accounts.hasher.hash("x" * 12).startswith("$argon2id$")
    finally:
        engine.dispose()


def test_bad_input_is_refused_and_nothing_is_written(accounts: Accounts) -> None:
    with pytest.raises(CommandRefused, match="role 'surgeon'"):
        accounts.add("dr.ruiz", "surgeon", GOOD, by="admin")
    with pytest.raises(CommandRefused, match="user name 'Dr Ruiz'"):
        accounts.add("Dr Ruiz", "clinician", GOOD, by="admin")
    with pytest.raises(CommandRefused, match="at least 12 characters"):
        accounts.add("dr.ruiz", "clinician", "short", by="admin")
    with pytest.raises(CommandRefused, match="no such staff id"):
        accounts.add("dr.ruiz", "clinician", GOOD, member="nobody", by="admin")
    assert accounts.all() == []
    assert accounts.store.count() == 0


def test_a_second_account_of_the_same_name_is_a_conflict(accounts: Accounts) -> None:
    accounts.add("dr.ruiz", "clinician", GOOD, by="admin")
    with pytest.raises(AccountExists) as caught:
        accounts.add("dr.ruiz", "nurse", GOOD, by="admin")
    assert caught.value.exit_code == 3
    assert accounts.require("dr.ruiz").role == "clinician"
    assert len(accounts.store.read_stream("account:dr.ruiz")) == 1


def test_authenticate_checks_the_password(accounts: Accounts) -> None:
    accounts.add("dr.ruiz", "clinician", GOOD, by="admin")
    assert accounts.authenticate("dr.ruiz", GOOD).username == "dr.ruiz"
    for name, password, reason in [("dr.ruiz", "wrong password!", "password"),
                                   ("nobody", GOOD, "unknown"),
                                   ("<script>", GOOD, "unknown")]:
        with pytest.raises(LoginRefused) as caught:
            accounts.authenticate(name, password)
        assert caught.value.reason == reason
        assert str(caught.value) == "unknown user name or wrong password"


def test_role_changes_and_password_changes_are_events(accounts: Accounts) -> None:
    accounts.add("lopez", "nurse", GOOD, by="admin")
    accounts.set_role("lopez", "pharmacist", member="nurse.lopez", by="admin")
    accounts.set_password("lopez", "a new long password", by="admin")
    assert accounts.require("lopez").role == "pharmacist"
    assert [h["type"] for h in accounts.history("lopez")] == [
        "AccountCreated", "AccountRoleChanged", "AccountPasswordChanged"]
    with pytest.raises(LoginRefused):
        accounts.authenticate("lopez", GOOD)
    assert accounts.authenticate("lopez", "a new long password").role == "pharmacist"
    with pytest.raises(NotFound):
        accounts.set_role("ghost", "nurse", member=None, by="admin")


def test_a_disabled_account_cannot_log_in(accounts: Accounts) -> None:
    accounts.add("lopez", "nurse", GOOD, by="admin")
    assert accounts.disable("lopez", by="admin", reason="left") is True
    assert accounts.disable("lopez", by="admin") is False  # nothing more written
    account = accounts.get("lopez")
    assert account is not None and account.disabled
    with pytest.raises(LoginRefused) as caught:
        accounts.authenticate("lopez", GOOD)
    assert caught.value.reason == "disabled"
    assert [h["type"] for h in accounts.history("lopez")] == ["AccountCreated",
                                                              "AccountDisabled"]


def _fail(accounts: Accounts, times: int) -> None:
    for _ in range(times):
        with pytest.raises(LoginRefused):
            accounts.authenticate("lopez", "not the password")


def test_five_failures_lock_for_exactly_fifteen_minutes(accounts: Accounts,
                                                        clock: FixedClock) -> None:
    accounts.add("lopez", "nurse", GOOD, by="admin")
    _fail(accounts, 4)
    assert accounts.authenticate("lopez", GOOD).failed_attempts == 0  # reset by success
    _fail(accounts, 5)
    locked_at = clock.now()
    history = accounts.history("lopez")
    assert history[-1]["type"] == "AccountLocked"
    assert history[-1]["recorded_by"] == "system"
    # one minute before the end of the lock: refused, even with the right password
    clock.instant = locked_at + LOCK_FOR - timedelta(seconds=1)
    with pytest.raises(LoginRefused) as caught:
        accounts.authenticate("lopez", GOOD)
    assert caught.value.reason == "locked"
    # at the end of the lock: open again
    clock.instant = locked_at + LOCK_FOR
    assert accounts.authenticate("lopez", GOOD).locked_until is None


def test_after_a_lock_the_count_starts_afresh(accounts: Accounts, clock: FixedClock) -> None:
    accounts.add("lopez", "nurse", GOOD, by="admin")
    _fail(accounts, 5)
    clock.advance(LOCK_FOR)
    _fail(accounts, 4)
    account = accounts.require("lopez")
    assert account.failed_attempts == 4 and not account.locked(clock.now())
    _fail(accounts, 1)
    assert accounts.require("lopez").locked(clock.now())
    assert [h["type"] for h in accounts.history("lopez")].count("AccountLocked") == 2


def test_attempts_while_locked_do_not_extend_the_lock(accounts: Accounts,
                                                      clock: FixedClock) -> None:
    accounts.add("lopez", "nurse", GOOD, by="admin")
    _fail(accounts, 5)
    until = accounts.require("lopez").locked_until
    clock.advance(timedelta(minutes=10))
    _fail(accounts, 3)
    assert accounts.require("lopez").locked_until == until


def test_a_new_password_lifts_the_lock(accounts: Accounts) -> None:
    accounts.add("lopez", "nurse", GOOD, by="admin")
    _fail(accounts, 5)
    accounts.set_password("lopez", "a fresh long password", by="admin")
    assert accounts.authenticate("lopez", "a fresh long password").username == "lopez"
