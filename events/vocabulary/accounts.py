"""Staff accounts of the web application: who had which access, and when.

Written by the system (``cno-tracker users …``), never imported from outside; each
account has its own stream ``account:<username>``, never a patient stream. No password
or password hash is ever in the log: a password change is recorded as a fact only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from events.vocabulary.common import EventData

Name = Annotated[str, Field(min_length=1, max_length=64)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class _AccountEvent(EventData):
    importable = False
    username: Name


class AccountCreated(_AccountEvent):
    role: Name
    member: Name | None = None  # the roster's staff id, for "my alerts"


class AccountRoleChanged(_AccountEvent):
    role: Name
    member: Name | None = None


class AccountPasswordChanged(_AccountEvent):
    pass


class AccountDisabled(_AccountEvent):
    reason: ShortText | None = None


class AccountLocked(_AccountEvent):
    failed_attempts: int
    until: datetime


class AccountTokenIssued(_AccountEvent):
    """An API token was issued (an integration account); the token is never in the log."""


class AccountTokenRevoked(_AccountEvent):
    tokens: int  # how many tokens stopped working
