"""Server-side sessions in the database: the web processes stay stateless, so several can
run behind a load balancer over one PostgreSQL.

**[reading]** A session expires when it has been idle for ``idle`` (no request for that
long) or has lived for ``absolute``, whichever comes first; both bounds are inclusive (idle
for exactly 15 minutes is expired). ``last_seen_at`` is written at most every
``TOUCH_SECONDS``, so the idle bound is measured from the last *recorded* request: a session
can end up to that many seconds early, never late."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update

from tracker.accounts import ACCOUNT_COLUMNS, Account
from tracker.clock import Clock
from web.tables import web_sessions

TOUCH_SECONDS = 30


@dataclass(frozen=True)
class Session:
    token_hash: str
    username: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, engine: Engine, clock: Clock, *, idle: timedelta,
                 absolute: timedelta) -> None:
        self.engine = engine
        self.clock = clock
        self.idle = idle
        self.absolute = absolute

    def start(self, username: str) -> tuple[str, Session]:
        """A new session for ``username``: the cookie value and the session."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        session = Session(token_hash(token), username, secrets.token_urlsafe(32), now, now)
        with self.engine.begin() as conn:
            conn.execute(insert(web_sessions).values(
                token_hash=session.token_hash, username=username,
                csrf_token=session.csrf_token, created_at=now, last_seen_at=now))
        return token, session

    def expired(self, session: Session, now: datetime) -> bool:
        return (now - session.last_seen_at >= self.idle
                or now - session.created_at >= self.absolute)

    def load(self, token: str) -> Session | None:
        """The live session behind a cookie, touched; None when unknown, ended or expired
        (an expired one is ended on the way)."""
        digest = token_hash(token)
        t = web_sessions.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.token_hash, t.username, t.csrf_token, t.created_at, t.last_seen_at)
                .where(t.token_hash == digest, t.ended_at.is_(None))).first()
        return self._live(digest, row)

    def load_with_account(self, token: str) -> tuple[Session, Account | None] | None:
        """:meth:`load` and the session's account (None when it is gone) in one query:
        every request needs both."""
        from tracker.account_tables import accounts as A

        digest = token_hash(token)
        t = web_sessions.c
        q = (select(t.token_hash, t.username, t.csrf_token, t.created_at, t.last_seen_at,
                    *ACCOUNT_COLUMNS)
             .select_from(web_sessions.outerjoin(A, A.c.username == t.username))
             .where(t.token_hash == digest, t.ended_at.is_(None)))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        session = self._live(digest, row[:5] if row is not None else None)
        if session is None or row is None:
            return None
        account = Account(*row[5:]) if row[5] is not None else None
        return session, account

    def _live(self, digest: str, row: Any) -> Session | None:
        if row is None:
            return None
        session = Session(*row)
        now = self.clock.now()
        if self.expired(session, now):
            self._end(digest, now)
            return None
        if now - session.last_seen_at >= timedelta(seconds=TOUCH_SECONDS):
            t = web_sessions.c
            with self.engine.begin() as conn:
                conn.execute(update(web_sessions).where(t.token_hash == digest)
                             .values(last_seen_at=now))
        return session

    def end(self, token: str) -> None:
        self._end(token_hash(token), self.clock.now())

    def end_all(self, username: str) -> int:
        """End every live session of ``username`` (account disabled or removed)."""
        t = web_sessions.c
        with self.engine.begin() as conn:
            result = conn.execute(update(web_sessions)
                                  .where(t.username == username, t.ended_at.is_(None))
                                  .values(ended_at=self.clock.now()))
        return result.rowcount

    def _end(self, digest: str, now: datetime) -> None:
        t = web_sessions.c
        with self.engine.begin() as conn:
            conn.execute(update(web_sessions)
                         .where(t.token_hash == digest, t.ended_at.is_(None))
                         .values(ended_at=now))
