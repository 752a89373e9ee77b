"""The staff roster: who receives which alert, by which channel, and who is next when
nobody acknowledges. A TOML file validated with pydantic; errors name the TOML line.

Format (see ``examples/roster.toml``)::

    [[staff]]
    id = "nurse.lopez"              # pseudonymous staff id (letters, digits, . _ -)
    name = "A. López"               # staff are not patients: a name is fine here
    roles = ["nurse"]               # lowercase identifiers, open vocabulary
    phone = "+34600000001"          # E.164; required when preferred_channel = "sms"
    email = "a.lopez@example.org"   # required when preferred_channel = "email"
    on_call = true
    preferred_channel = "sms"       # "sms" | "email" | "console"

    [routing]
    default = ["nurse"]             # used when neither the kind nor the severity is routed
    [routing.severity]
    urgent = ["on_call_consultant"]
    [routing.kind]
    pamidronate_dose_due = ["nurse", "pharmacist"]

    [escalation]
    chain = ["rheumatologist", "on_call_consultant"]
    delay_minutes = 60              # optional: at most the protocol's escalation_minutes

Optional (issue 13): ``owner = "<staff id>"`` before the first table (told of SMS
opt-outs), and on-call schedules per role — ``[[rotation]]``, ``[[shift]]``,
``[[override]]`` in the centre's local time (see :mod:`alerts.oncall`,
``examples/roster-oncall.toml`` and ``docs/alerts-oncall.md``).

Rules, checked by :func:`load_roster` (each failure is a :class:`~alerts.errors.RosterError`
with the line of the offending key, or of its ``[[staff]]`` / ``[routing]`` header):
unique staff ids; E.164 phones that ``phonenumbers`` knows as valid numbers; e-mail
addresses ``email-validator`` accepts (syntax only, no DNS); the preferred channel's address
present; severity and kind keys known; every role named in routing or escalation held by
at least one person; every severity routable (its own entry or ``default``).

**[reading]** Routing precedence: a kind entry wins over a severity entry, which wins over
``default`` (no union), so a centre can route one kind precisely.
**[reading]** Within a role, who the schedule puts on call at the alert's instant
receives the alert; when no entry covers it, the members marked ``on_call``; when none of
them is on call, every member of the role does (an alert is never routed to nobody).
**[reading]** ``level`` 0 is the first delivery (routing); level ``n`` ≥ 1 is the n-th
escalation step and goes to ``chain[n - 1]``; :meth:`Roster.next_role` (``level``) is the
role an alert currently at ``level`` escalates to, ``None`` at the end of the chain.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Literal, TypeVar

import email_validator
import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alerts.channels.base import SEVERITIES, Recipient, Severity, is_address, is_e164
from alerts.errors import RosterError
from alerts.messages import ALERT_KINDS
from alerts.oncall import Rotation, Schedule, Shift

ChannelName = Literal["sms", "email", "console"]
STAFF_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ROLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: channels every worker has, used for staff whose own channels it lacks
FALLBACK_CHANNELS = ("file", "console")


def phone_problem(number: str) -> str | None:
    """Why ``number`` is not a dialable phone number (``phonenumbers``' metadata: country
    code, length and number ranges), or None. ``+1234`` is refused here."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "it cannot be parsed as a phone number"
    if not phonenumbers.is_valid_number(parsed):
        return "no such number in its country's numbering plan"
    if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != number:
        return "it is not written in E.164 form"
    return None


def email_problem(address: str) -> str | None:
    """Why ``address`` is not a valid e-mail address (``email-validator``, syntax only: no
    DNS lookup at start-up), or None. ``a..b@x`` is refused here."""
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        return str(exc).rstrip(".")
    return None


@dataclass(frozen=True, slots=True)
class Route:
    """One delivery to create: a staff id and the channel to use."""

    recipient: str
    channel: str


def _roles(values: Sequence[str]) -> tuple[str, ...]:
    for role in values:
        if not ROLE_RE.fullmatch(role):
            raise ValueError(f"role {role!r} must be a lowercase identifier like 'nurse'")
    if len(set(values)) != len(values):
        raise ValueError("a role is listed twice")
    return tuple(values)


class StaffMember(BaseModel):
    """One person who can receive alerts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str = Field(min_length=1)
    roles: tuple[str, ...] = Field(min_length=1)
    phone: str | None = None
    email: str | None = None
    on_call: bool = False
    preferred_channel: ChannelName

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not STAFF_ID_RE.fullmatch(value):
            raise ValueError("must be letters, digits, '.', '_' or '-' (e.g. nurse.lopez)")
        return value

    @field_validator("roles")
    @classmethod
    def _check_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _roles(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not is_e164(value):
            raise ValueError("must be an E.164 number like +34600000001 (no spaces)")
        problem = phone_problem(value)
        if problem is not None:
            raise ValueError(f"must be a valid E.164 phone number: {problem}")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return value
        problem = email_problem(value)
        if problem is not None:
            raise ValueError(f"must be a valid e-mail address: {problem}")
        if not is_address(value):
            raise ValueError("must be a plain address like name@example.org")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> StaffMember:
        if self.preferred_channel == "sms" and self.phone is None:
            raise ValueError("preferred_channel 'sms' needs a phone")
        if self.preferred_channel == "email" and self.email is None:
            raise ValueError("preferred_channel 'email' needs an email")
        return self

    def recipient(self) -> Recipient:
        """The channel-facing view (no name, no roles)."""
        return Recipient(staff_id=self.id, phone=self.phone, email=self.email)

    def channels(self) -> tuple[ChannelName, ...]:
        """The preferred channel first, then the other channels this person can be reached by."""
        usable: list[ChannelName] = [self.preferred_channel]
        if self.phone is not None and "sms" not in usable:
            usable.append("sms")
        if self.email is not None and "email" not in usable:
            usable.append("email")
        return tuple(usable)


class Routing(BaseModel):
    """Roles per alert kind and per severity, and a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: tuple[str, ...] = ()
    severity: dict[Severity, tuple[str, ...]] = Field(default_factory=dict)
    kind: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("default")
    @classmethod
    def _default(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _roles(value)

    @field_validator("severity", "kind")
    @classmethod
    def _mapping(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for roles in value.values():
            if not roles:
                raise ValueError("an entry must name at least one role")
            _roles(roles)
        return value

    def roles_for(self, kind: str, severity: str) -> tuple[str, ...]:
        return self.kind.get(kind) or self.severity.get(severity) or self.default  # type: ignore[call-overload]


class Escalation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    chain: tuple[str, ...] = ()
    #: None: the protocol's escalation_minutes (alerts.rules.EscalationPolicy decides)
    delay_minutes: int | None = Field(default=None, gt=0)

    @field_validator("chain")
    @classmethod
    def _chain(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for role in value:
            if not ROLE_RE.fullmatch(role):
                raise ValueError(f"role {role!r} must be a lowercase identifier like 'nurse'")
        return value


class Roster(BaseModel):
    """The validated roster. Build it with :func:`load_roster` (line-precise errors) or
    directly (``Roster.model_validate(dict)``, pydantic errors)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    staff: tuple[StaffMember, ...] = Field(min_length=1)
    routing: Routing
    escalation: Escalation = Escalation()
    #: the staff id told when someone's SMS opt-out changes (None: nobody is told)
    owner: str | None = None
    #: on-call rotations, shifts and overrides (alerts/oncall.py); empty: on_call flags
    schedule: Schedule = Schedule()

    @model_validator(mode="after")
    def _consistent(self) -> Roster:
        problem = _cross_check(self)
        if problem is not None:
            raise ValueError(problem[1])
        return self

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(role for member in self.staff for role in member.roles)

    def member(self, staff_id: str) -> StaffMember:
        for member in self.staff:
            if member.id == staff_id:
                return member
        raise KeyError(staff_id)

    def members_with(self, role: str, at: datetime | None = None,
                     zone: tzinfo | None = None) -> list[StaffMember]:
        """Who is on call for ``role`` at the instant ``at`` by the schedule (in ``zone``,
        the centre's); when the schedule names nobody (or no instant is given), the
        members flagged ``on_call``, or all its members when nobody is flagged."""
        members = [m for m in self.staff if role in m.roles]
        if at is not None and self.schedule:
            if zone is None:
                raise ValueError("a schedule needs the centre's time zone")
            scheduled = self.schedule.on_call(role, at, zone)
            if scheduled:
                return [self.member(staff_id) for staff_id in scheduled]
        on_call = [m for m in members if m.on_call]
        return on_call or members

    def roles_for(self, kind: str, severity: str, level: int = 0) -> tuple[str, ...]:
        """The roles an alert goes to at ``level`` (0 = routing, n ≥ 1 = escalation step n)."""
        if kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {kind!r}")
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}")
        if level < 0:
            raise ValueError("level must be >= 0")
        if level == 0:
            return self.routing.roles_for(kind, severity)
        chain = self.escalation.chain
        return (chain[level - 1],) if level <= len(chain) else ()

    def recipients_for(self, kind: str, severity: str, level: int = 0, *,
                       at: datetime | None = None, zone: tzinfo | None = None
                       ) -> list[StaffMember]:
        """The staff to notify for an alert of ``kind``/``severity`` at ``level`` (on call
        at ``at``), deduplicated in routing order; empty once ``level`` is past the end of
        the escalation chain."""
        chosen: dict[str, StaffMember] = {}
        for role in self.roles_for(kind, severity, level):
            for member in self.members_with(role, at, zone):
                chosen.setdefault(member.id, member)
        return list(chosen.values())

    def routes(self, kind: str, severity: str, level: int,
               available: Collection[str], *, at: datetime | None = None,
               zone: tzinfo | None = None, sms_off: Collection[str] = ()) -> list[Route]:
        """One route per person named for ``kind``/``severity`` at ``level`` (on call at
        ``at``), by their preferred channel when this worker has it, else another channel
        they can be reached by, else the local fallback (file, then console). Staff in
        ``sms_off`` (they replied STOP) are not routed by SMS.

        **[reading]** A person whose channels are all unconfigured here (a development
        set-up with neither Twilio nor SMTP) is reached through the console/file fallback
        rather than not at all."""
        fallback = next((c for c in FALLBACK_CHANNELS if c in available), None)
        out: list[Route] = []
        for member in self.recipients_for(kind, severity, level, at=at, zone=zone):
            channel = next((c for c in member.channels() if c in available
                            and not (c == "sms" and member.id in sms_off)), fallback)
            if channel is not None:
                out.append(Route(member.id, channel))
        return out

    def next_role(self, level: int) -> str | None:
        """The role an alert at ``level`` escalates to (``chain[level]``), or None."""
        if level < 0:
            raise ValueError("level must be >= 0")
        chain = self.escalation.chain
        return chain[level] if level < len(chain) else None


# ---------------------------------------------------------------- loading

Path_ = tuple[str | int, ...]


def _cross_check(roster: Roster) -> tuple[Path_, str] | None:
    """The first inconsistency across sections: (TOML path, reason), or None."""
    seen: set[str] = set()
    for index, member in enumerate(roster.staff):
        if member.id in seen:
            return ("staff", index, "id"), f"duplicate staff id {member.id!r}"
        seen.add(member.id)
    held = roster.roles
    routing = roster.routing
    for kind in routing.kind:
        if kind not in ALERT_KINDS:
            return ("routing", "kind", kind), f"unknown alert kind {kind!r} in [routing.kind]"
    named: list[tuple[Path_, str]] = [(("routing", "default"), r) for r in routing.default]
    named += [(("routing", "severity", s), r) for s, rs in routing.severity.items() for r in rs]
    named += [(("routing", "kind", k), r) for k, rs in routing.kind.items() for r in rs]
    named += [(("escalation", "chain"), r) for r in roster.escalation.chain]
    for where, role in named:
        if role not in held:
            return where, f"role {role!r} is routed to but no staff member has it"
    if roster.owner is not None and roster.owner not in seen:
        return ("owner",), f"owner {roster.owner!r} is not a staff id of the roster"
    for section, index, role, members in roster.schedule.entries():
        if role not in held:
            return (section, index, "role"), (
                f"role {role!r} is scheduled but no staff member has it")
        for staff_id in members:
            key = "members" if section == "rotation" else "member"
            if staff_id not in seen:
                return (section, index, key), f"{staff_id!r} is not a staff id of the roster"
            if role not in roster.member(staff_id).roles:
                return (section, index, key), f"{staff_id!r} does not hold the role {role!r}"
    for severity in SEVERITIES:
        if severity not in routing.severity and not routing.default:
            return ("routing",), (
                f"severity {str(severity)!r} is not routed: add [routing.severity] {severity} "
                "or [routing] default")
    return None


def load_roster(path: str | Path) -> Roster:
    """Read and validate a TOML roster; :class:`RosterError` (line, reason) when invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError(None, f"cannot read roster file ({type(exc).__name__})") from None
    return parse_roster(text)


def parse_roster(text: str) -> Roster:
    """:func:`load_roster` on TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(match.group(1)) if match else None
        reason = message[: match.start()].strip() if match else message
        raise RosterError(line, f"not valid TOML: {reason}") from None
    where = _Locator(text)
    unknown = sorted(set(data) - {"staff", "routing", "escalation", "owner", *_SCHEDULE})
    if unknown:
        raise RosterError(where.line((unknown[0],)), f"unknown section {unknown[0]!r}")
    staff = data.get("staff")
    if not isinstance(staff, list) or not staff:
        raise RosterError(where.line(("staff",)), "at least one [[staff]] entry is required")
    members: list[StaffMember] = []
    for index, entry in enumerate(staff):
        try:
            members.append(StaffMember.model_validate(entry))
        except ValidationError as exc:
            loc, msg = _first(exc)
            label = _staff_label(index, entry)
            field = f"{loc[0]}: " if loc else ""
            raise RosterError(where.line(("staff", index, *loc)),
                              f"{label}: {field}{msg}") from None
    if "routing" not in data:
        raise RosterError(None, "a [routing] section is required")
    routing = _section(Routing, "routing", data, where)
    escalation = _section(Escalation, "escalation", data, where) or Escalation()
    assert routing is not None
    owner = data.get("owner")
    if owner is not None and not isinstance(owner, str):
        raise RosterError(where.line(("owner",)), "owner must be a staff id (a string)")
    roster = Roster.model_construct(
        staff=tuple(members), routing=routing, escalation=escalation, owner=owner,
        schedule=_schedule(data, where))
    problem = _cross_check(roster)
    if problem is not None:
        raise RosterError(where.line(problem[0]), problem[1])
    return Roster.model_validate(roster.model_dump())


_Section = TypeVar("_Section", bound=BaseModel)
_SCHEDULE: dict[str, type[BaseModel]] = {"rotation": Rotation, "shift": Shift, "override": Shift}


def _schedule(data: dict[str, Any], where: _Locator) -> Schedule:
    """The ``[[rotation]]``, ``[[shift]]`` and ``[[override]]`` entries, line-precise."""
    parts: dict[str, list[Any]] = {}
    for name, model in _SCHEDULE.items():
        entries = data.get(name, [])
        if not isinstance(entries, list):
            raise RosterError(where.line((name,)), f"{name} must be [[{name}]] tables")
        parts[name] = []
        for index, entry in enumerate(entries):
            try:
                parts[name].append(model.model_validate(entry))
            except ValidationError as exc:
                loc, msg = _first(exc)
                field = f"{loc[0]}: " if loc else ""
                raise RosterError(where.line((name, index, *loc)),
                                  f"[[{name}]] entry #{index + 1}: {field}{msg}") from None
    return Schedule.model_validate(parts)


def _section(model: type[_Section], name: str, data: dict[str, Any],
             where: _Locator) -> _Section | None:
    if name not in data:
        return None
    try:
        return model.model_validate(data[name])
    except ValidationError as exc:
        loc, msg = _first(exc)
        key = ".".join(str(p) for p in (name, *loc) if p != "[key]")
        raise RosterError(where.line((name, *loc)), f"[{key}]: {msg}") from None


def _first(exc: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """The error to report: an unknown key first (it often explains a missing one)."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    msg = str(error["msg"]).removeprefix("Value error, ")
    return tuple(error["loc"]), msg


def _staff_label(index: int, entry: Any) -> str:
    staff_id = entry.get("id") if isinstance(entry, dict) else None
    named = f" ({staff_id!r})" if isinstance(staff_id, str) else ""
    return f"staff entry #{index + 1}{named}"


_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*\"?([A-Za-z0-9_.-]+)\"?\s*=")


class _Locator:
    """Finds the 1-based line of a TOML path in the text: ``("staff", 2, "phone")`` is the
    ``phone =`` line of the third ``[[staff]]`` table (or that table's header line)."""

    def __init__(self, text: str) -> None:
        self.headers: list[tuple[int, str]] = []  # (line number, dotted table name)
        self.lines = text.splitlines()
        for number, line in enumerate(self.lines, start=1):
            match = _HEADER_RE.match(line)
            if match:
                name = ".".join(p.strip().strip('"') for p in match.group(2).split("."))
                self.headers.append((number, name))

    def _block(self, name: str, occurrence: int = 0) -> tuple[int, int] | None:
        found = [i for i, (_, header) in enumerate(self.headers) if header == name]
        if occurrence >= len(found):
            return None
        i = found[occurrence]
        start = self.headers[i][0]
        end = self.headers[i + 1][0] if i + 1 < len(self.headers) else len(self.lines) + 1
        return start, end

    def _key(self, block: tuple[int, int] | None, key: str) -> int | None:
        if block is None:
            return None
        for number in range(block[0] + 1, block[1]):
            match = _KEY_RE.match(self.lines[number - 1])
            if match and match.group(1) == key:
                return number
        return None

    def line(self, path: Iterable[str | int]) -> int | None:
        parts = list(path)
        if len(parts) >= 2 and isinstance(parts[0], str) and isinstance(parts[1], int):
            block = self._block(parts[0], parts[1])
            keys = [p for p in parts[2:3] if isinstance(p, str)]
            keyed = self._key(block, keys[0]) if keys else None
            return keyed or (block[0] if block else self._top_key(parts[0]))
        names = [str(p) for p in parts]
        fallback: int | None = None
        for cut in range(len(names), 0, -1):
            block = self._block(".".join(names[:cut]))
            if block is None:
                continue
            if cut < len(names):
                keyed = self._key(block, names[cut])
                if keyed:
                    return keyed
            fallback = fallback or block[0]
        if not names:
            return None
        return fallback or self._top_key(names[0])

    def _top_key(self, key: str) -> int | None:
        end = self.headers[0][0] if self.headers else len(self.lines) + 1
        return self._key((0, end), key)
