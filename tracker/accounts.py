"""Staff accounts: create, list, change role, disable, set a password, authenticate.

Each account's history is events in its own stream ``account:<username>`` (who had access
when is auditable by replaying the log); the ``accounts`` table holds the current state a
login reads at once, and the argon2id hash of the password, which never enters the log.
Both are written in one transaction.

**[reading]** After ``MAX_FAILURES`` (5) consecutive failed attempts the account is locked
for ``LOCK_FOR`` (15 minutes) from the fifth failure; a locked account refuses even the
right password and attempts while it is locked are not counted; at ``locked_until`` itself
it is open again with a fresh count. A successful login resets the count.
A disabled account refuses every login, and its live sessions stop at their next request
(the web application reads :meth:`Accounts.get` on every request).

**API tokens.** An ``integration`` account (the FHIR endpoint's machine account) has no
password (its hash is a marker argon2 never verifies, so it cannot log in) but API tokens:
``TOKEN_PREFIX`` + 43 url-safe characters of a 256-bit random value, printed once. Only
the token's SHA-256 is stored (``api_tokens``). A plain hash, not argon2: a 256-bit random
value cannot be guessed or brute-forced from its hash, so key stretching buys nothing,
while argon2 would cost every machine request tens of milliseconds of CPU (an easy
denial of service) and could not be looked up by index. Issuing and revoking are account
events (never the token). A disabled account's tokens stop working at once."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, delete, insert, select, update

from events.envelope import NewEvent
from events.errors import ConcurrencyConflict
from events.ids import new_event_id
from events.store import EventStore
from events.vocabulary import (
    AccountCreated,
    AccountDisabled,
    AccountLocked,
    AccountPasswordChanged,
    AccountRoleChanged,
    AccountTokenIssued,
    AccountTokenRevoked,
    EventData,
)
from tracker.account_tables import accounts as A
from tracker.account_tables import api_tokens as K
from tracker.clock import Clock
from tracker.errors import CommandRefused, NotFound, TrackerError

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
#: lowercase staff ids like the roster's (``nurse.lopez``); short enough for the stream name
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,55}$")
STREAM_PREFIX = "account:"
TOKEN_PREFIX = "cnot_"
#: the password hash of an account that logs in by API token only (argon2 refuses it)
NO_PASSWORD = "!token-only"


class Role(StrEnum):
    """The web roles; the same words as the roster's alert routing roles."""

    CLINICIAN = "clinician"
    NURSE = "nurse"
    PHARMACIST = "pharmacist"
    AUDITOR = "auditor"
    ADMIN = "admin"
    INTEGRATION = "integration"


ROLES: tuple[str, ...] = tuple(r.value for r in Role)


class AccountExists(TrackerError):
    exit_code = 3


class LoginRefused(TrackerError):
    """One message whatever the reason, so a login form tells an attacker nothing;
    ``reason`` (unknown, password, disabled, locked) is for tests and the audit only."""

    exit_code = 2

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__("unknown user name or wrong password")


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: str
    member: str | None
    disabled: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def stream_of(username: str) -> str:
    return STREAM_PREFIX + username


def check_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise CommandRefused(
            f"user name {username!r}: lowercase letters, digits, '.', '_' or '-', "
            "at most 56 characters, starting with a letter or digit")
    return username


def _no_password_for_machines(role: str) -> None:
    if role == Role.INTEGRATION:
        raise CommandRefused("role integration: a machine account gets an API token, not a "
                             "password (cno-tracker users add NAME --role integration)")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise CommandRefused(f"role {role!r}: must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise CommandRefused(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise CommandRefused(f"password: at most {MAX_PASSWORD} characters")
    return password


_COLUMNS = (A.c.username, A.c.role, A.c.member, A.c.disabled, A.c.failed_attempts,
            A.c.locked_until, A.c.created_at)
#: the columns an :class:`Account` is built from, in order (``Account(*row)``)
ACCOUNT_COLUMNS = _COLUMNS


class Accounts:
    """The accounts of one database. ``hasher`` defaults to argon2id with the library's
    recommended parameters (RFC 9106's low-memory profile)."""

    def __init__(self, engine: Engine, store: EventStore, clock: Clock, *,
                 hasher: PasswordHasher | None = None,
                 member_exists: Callable[[str], bool] | None = None) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self.member_exists = member_exists
        self._dummy_hash = self.hasher.hash("not a password of anybody")

    # ------------------------------------------------------------------ reading
    def get(self, username: str) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_COLUMNS).where(A.c.username == username)).first()
        return Account(*row) if row else None

    def require(self, username: str) -> Account:
        account = self.get(username)
        if account is None:
            raise NotFound(f"no account {username!r}")
        return account

    def all(self) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).order_by(A.c.username)).all()
        return [Account(*r) for r in rows]

    def history(self, username: str) -> list[dict[str, Any]]:
        """The account's events, oldest first (type, when, by, data)."""
        return [{"type": e.type, "recorded_at": e.recorded_at, "recorded_by": e.recorded_by,
                 "data": e.data.model_dump(mode="json", exclude_none=True)}
                for e in self.store.read_stream(stream_of(username))]

    # ------------------------------------------------------------------ writing
    def add(self, username: str, role: str, password: str, *, member: str | None = None,
            by: str) -> Account:
        check_username(username)
        check_role(role)
        _no_password_for_machines(role)
        self._check_member(member)
        check_password(password)
        digest = self.hasher.hash(password)
        now = self.clock.now()
        try:
            with self.store.transaction() as w:
                if self._row(w.conn, username) is not None:
                    raise AccountExists(f"account {username!r} exists already")
                w.append(stream_of(username), 0, [self._event(
                    AccountCreated(username=username, role=role, member=member), now, by)])
                w.conn.execute(insert(A).values(
                    username=username, role=role, member=member, password_hash=digest,
                    disabled=False, failed_attempts=0, locked_until=None, created_at=now,
                    updated_at=now))
        except ConcurrencyConflict:
            raise AccountExists(f"account {username!r} exists already") from None
        return self.require(username)

    def add_integration(self, username: str, *, by: str) -> tuple[Account, str]:
        """Create an ``integration`` account (no password) and its first API token: the
        account and the token, which is shown to the caller once and never stored."""
        check_username(username)
        now = self.clock.now()
        token = new_token()
        try:
            with self.store.transaction() as w:
                if self._row(w.conn, username) is not None:
                    raise AccountExists(f"account {username!r} exists already")
                w.append(stream_of(username), 0, [
                    self._event(AccountCreated(username=username, role=Role.INTEGRATION),
                                now, by),
                    self._event(AccountTokenIssued(username=username), now, by)])
                w.conn.execute(insert(A).values(
                    username=username, role=Role.INTEGRATION.value, member=None,
                    password_hash=NO_PASSWORD, disabled=False, failed_attempts=0,
                    locked_until=None, created_at=now, updated_at=now))
                w.conn.execute(insert(K).values(token_sha256=token_digest(token),
                                                username=username, created_at=now))
        except ConcurrencyConflict:
            raise AccountExists(f"account {username!r} exists already") from None
        return self.require(username), token

    def rotate_token(self, username: str, *, by: str) -> str:
        """A new API token for an integration account; its earlier tokens stop working."""
        if self.require(username).role != Role.INTEGRATION:
            raise CommandRefused(f"account {username!r} is not an integration account")
        token = new_token()
        now = self.clock.now()
        with self.store.transaction() as w:
            old = w.conn.execute(delete(K).where(K.c.username == username)).rowcount
            stream = stream_of(username)
            events = [self._event(AccountTokenRevoked(username=username, tokens=old), now, by)
                      ] if old else []
            events.append(self._event(AccountTokenIssued(username=username), now, by))
            w.append(stream, w.head(stream).version, events)
            w.conn.execute(insert(K).values(token_sha256=token_digest(token),
                                            username=username, created_at=now))
        return token

    def revoke_tokens(self, username: str, *, by: str) -> int:
        """Revoke every API token of ``username``: how many there were (0: nothing written)."""
        self.require(username)
        now = self.clock.now()
        with self.store.transaction() as w:
            n = w.conn.execute(delete(K).where(K.c.username == username)).rowcount
            if n:
                stream = stream_of(username)
                w.append(stream, w.head(stream).version, [
                    self._event(AccountTokenRevoked(username=username, tokens=n), now, by)])
        return int(n)

    def by_token(self, token: str) -> Account | None:
        """The live (not disabled) ``integration`` account an API token belongs to, or
        None: a token of an account since given another role authenticates nothing (it
        would otherwise read patients with that role, and with no CSRF check)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        with self.engine.connect() as conn:
            username = conn.execute(select(K.c.username).where(
                K.c.token_sha256 == token_digest(token))).scalar_one_or_none()
        account = self.get(username) if username is not None else None
        if account is None or account.disabled or account.role != Role.INTEGRATION:
            return None
        return account

    def set_role(self, username: str, role: str, *, member: str | None, by: str) -> Account:
        check_role(role)
        _no_password_for_machines(role)
        self._check_member(member)
        self._change(username, AccountRoleChanged(username=username, role=role, member=member),
                     by, role=role, member=member)
        return self.require(username)

    def set_password(self, username: str, password: str, *, by: str) -> None:
        check_password(password)
        digest = self.hasher.hash(password)
        self._change(username, AccountPasswordChanged(username=username), by,
                     password_hash=digest, failed_attempts=0, locked_until=None)

    def disable(self, username: str, *, by: str, reason: str | None = None) -> bool:
        """Disable an account; False when it was disabled already (nothing written)."""
        if self.require(username).disabled:
            return False
        self._change(username, AccountDisabled(username=username, reason=reason), by,
                     disabled=True)
        return True

    # ------------------------------------------------------------------ login
    def authenticate(self, username: str, password: str) -> Account:
        """The account when ``password`` is right and the account may log in; otherwise
        :class:`LoginRefused`. Failures are counted and lock the account (see the module)."""
        now = self.clock.now()
        account = self.get(username) if USERNAME_RE.fullmatch(username) else None
        if account is None:
            self._verify(self._dummy_hash, password)  # the same time as a known name
            raise LoginRefused("unknown")
        if account.disabled:
            raise LoginRefused("disabled")
        if account.locked(now):
            raise LoginRefused("locked")
        with self.engine.connect() as conn:
            digest = conn.execute(select(A.c.password_hash)
                                  .where(A.c.username == username)).scalar_one()
        if not self._verify(digest, password):
            self._failed(account, now)
            raise LoginRefused("password")
        values: dict[str, Any] = {}
        if account.failed_attempts or account.locked_until is not None:
            values.update(failed_attempts=0, locked_until=None)
        if self.hasher.check_needs_rehash(digest):
            values["password_hash"] = self.hasher.hash(password)
        if values:
            with self.engine.begin() as conn:
                conn.execute(update(A).where(A.c.username == username)
                             .values(updated_at=now, **values))
        return self.require(username)

    def _verify(self, digest: str, password: str) -> bool:
        try:
            return self.hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False

    def _failed(self, account: Account, now: datetime) -> None:
        with self.store.transaction() as w:
            count = w.conn.execute(
                update(A).where(A.c.username == account.username)
                .values(failed_attempts=A.c.failed_attempts + 1, updated_at=now)
                .returning(A.c.failed_attempts)).scalar_one()
            if count >= MAX_FAILURES:
                until = now + LOCK_FOR
                w.conn.execute(update(A).where(A.c.username == account.username)
                               .values(failed_attempts=0, locked_until=until))
                stream = stream_of(account.username)
                w.append(stream, w.head(stream).version, [self._event(
                    AccountLocked(username=account.username, failed_attempts=count,
                                  until=until), now, "system")])

    # ------------------------------------------------------------------ helpers
    def _check_member(self, member: str | None) -> None:
        if member is not None and self.member_exists is not None \
                and not self.member_exists(member):
            raise CommandRefused(f"--member {member!r}: no such staff id in the roster")

    def _row(self, conn: Connection, username: str) -> Any:
        return conn.execute(select(A.c.username).where(A.c.username == username)).first()

    def _change(self, username: str, data: EventData, by: str, **values: Any) -> None:
        now = self.clock.now()
        with self.store.transaction() as w:
            if self._row(w.conn, username) is None:
                raise NotFound(f"no account {username!r}")
            stream = stream_of(username)
            w.append(stream, w.head(stream).version, [self._event(data, now, by)])
            w.conn.execute(update(A).where(A.c.username == username)
                           .values(updated_at=now, **values))

    @staticmethod
    def _event(data: EventData, now: datetime, by: str) -> NewEvent:
        return NewEvent(event_id=new_event_id(), type=type(data).__name__, data=data,
                        occurred_at=now, occurred_on=now.date(), recorded_at=now,
                        recorded_by=by)
