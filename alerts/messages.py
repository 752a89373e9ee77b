"""Rendering alerts into PHI-free messages (clinical rules §6). Pure: no clock, no I/O.

A message carries only the pseudonymous patient reference, a *neutral label* of what
needs doing, the date, the severity word and the alert id. Never a name, birth date,
diagnosis, drug or result value: staff open the tracker for the detail. Every clinical
kind maps to one of a few labels (:data:`LABELS`); the alert kind itself is never put in
any text, because kinds name drugs and diagnoses.

- :func:`render` — one alert (any kind of :data:`ALERT_KINDS`, including ``escalation``).
- :func:`render_escalation` — an unacknowledged urgent alert sent up the escalation chain.
- :func:`render_digest` — the morning digest listing several alerts.

SMS texts are ASCII, under 160 characters even for the longest allowed patient reference
(64 characters); :func:`render` raises ``ValueError`` rather than produce a longer one.

**[reading]** The brief asks the e-mail body to tell staff how to open the record. The
program's own name (``cno-tracker``) names the condition, so messages say ``tracker status
<ref>``: a neutral alias a centre installs (``alias tracker=cno-tracker``), and a parameter
(``tracker_command``). Tests assert that "cno" appears nowhere in any message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date
from typing import NamedTuple, Protocol
from uuid import UUID

from alerts.channels.base import SEVERITIES, Message, Severity
from alerts.vocabulary import MessageKind
from events.vocabulary.common import check_patient_ref
from tracker.alertkinds import AlertKind

TRACKER_COMMAND = "tracker"  # a neutral alias: the real command name would name the disease
SMS_LIMIT = 160
#: the kind of a message about the alerting itself (not an alert: no ALERT_KINDS entry)
NOTICE_KIND = "notice"

#: Neutral label per alert kind: one label, or one per severity (warning → urgent = overdue).
_OVERDUE = {Severity.INFO: "{} due", Severity.WARNING: "{} due", Severity.URGENT: "{} overdue"}


def _per_severity(what: str) -> dict[str, str]:
    return {s.value: f.format(what) for s, f in _OVERDUE.items()}


K = AlertKind
LABELS: dict[str, str | dict[str, str]] = {
    K.PAMIDRONATE_DOSE_DUE: "infusion due",
    K.BASELINE_LABS_DUE: _per_severity("labs"),
    K.POST_DOSE_LABS_DUE: _per_severity("labs"),
    K.RENAL_ULTRASOUND_DUE: _per_severity("imaging"),
    K.HYPOCALCAEMIA: "urgent review",
    K.ANNUAL_CAP_WOULD_BE_EXCEEDED: "dose check needed",
    K.DOSE_DEVIATION: "dose check needed",
    K.CORTICOID_COURSE_LONG: "treatment review due",
    K.NSAID_REVIEW_DUE: "treatment review due",
    K.RELAPSE_DETECTED: "review due",
    K.REMISSION_REACHED: "status update",
    K.PAMIDRONATE_CONTRAINDICATED: "urgent review",
    K.SUPPLEMENT_SUGGESTED: "treatment review due",
    K.BIOPSY_RECOMMENDED: "review due",
    MessageKind.ESCALATION: "unacknowledged alert",
}

#: Every kind :func:`render` accepts (the §6 kinds plus ``escalation``), and ``digest``.
CLINICAL_KINDS: tuple[str, ...] = tuple(k for k in LABELS if k != MessageKind.ESCALATION)
ALERT_KINDS: tuple[str, ...] = (*LABELS, MessageKind.DIGEST)

SEVERITY_WORDS: dict[str, str] = {
    Severity.URGENT: "URGENT", Severity.WARNING: "Reminder", Severity.INFO: "Info"}
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


class AlertLike(Protocol):
    """What rendering needs from an alert (the outbox row or a view of it)."""

    @property
    def alert_id(self) -> str | int | UUID: ...
    @property
    def patient_ref(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def due_on(self) -> date: ...
    @property
    def status(self) -> str: ...


def label_for(kind: str, severity: str) -> str:
    """The neutral label for ``kind`` at ``severity`` (``ValueError`` for an unknown kind)."""
    _check_severity(severity)
    try:
        entry = LABELS[kind]
    except KeyError:
        raise ValueError(f"unknown alert kind {kind!r}") from None
    return entry if isinstance(entry, str) else entry[severity]


def _code(alert: AlertLike, wanted: bool) -> str | None:
    """The alert's acknowledgement code, when it has one (outbox rows do) and ``wanted``."""
    code = getattr(alert, "ack_code", None) if wanted else None
    return code if isinstance(code, str) and code.isalnum() and code.isascii() else None


def _is_short_link(link: str) -> bool:
    """An SMS's ``/a/<8 hex>`` link (e-mail links carry a signed token instead)."""
    tail = link.rsplit("/a/", 1)[-1]
    return "/a/" in link and len(tail) == 8 and all(c in "0123456789abcdef-" for c in tail)


def _sms(head: str, code: str | None, link: str | None, *, plain: str) -> str:
    """The SMS: ``head``, then how to act — reply with the code, and open the alert's
    ``<public url>/a/<short id>`` link when one is given and fits in one SMS (else "the
    tracker"). Without a code and a link: ``plain``."""
    def text(where: str) -> str:
        return f"{head} Reply OK {code} or open {where}." if code else f"{head} Open {where}."

    if link is not None and _is_short_link(link) and len(text(link)) < SMS_LIMIT:
        return text(link)
    return text("the tracker") if code else plain


def _ack_lines(code: str | None, link: str | None) -> list[str]:
    lines: list[str] = []
    if link is not None and not _is_short_link(link):
        lines += ["", "Open this alert to acknowledge it (after login; the link works once, "
                      "for 24 hours):", f"    {link}"]
    if code is not None:
        lines += ["", f"Or reply OK {code} to the alert SMS number."]
    return lines


def render(alert: AlertLike, *, tracker_command: str = TRACKER_COMMAND,
           link: str | None = None, reply_code: bool = True) -> Message:
    """The message for one alert. ``status`` is not shown (the worker decides what to send).
    With an acknowledgement code (and ``reply_code``: the channel can be replied to) the
    SMS says ``Reply OK <code>``. ``link`` is the alert's short ``<public url>/a/<id>``
    (SMS: put in the text when it fits) or a one-time signed link (e-mail: put in the
    e-mail text, never in an SMS)."""
    severity = _check_severity(alert.severity)
    ref = check_patient_ref(alert.patient_ref)
    label = label_for(alert.kind, severity)
    word = SEVERITY_WORDS[severity]
    when = alert.due_on.isoformat()
    code = _code(alert, reply_code)
    head = f"{word}: {label} for {ref}, {when}."
    sms = _sms(head, code, link, plain=f"{head} Open the tracker for details.")
    subject = f"[{word}] {ref}: {label} ({when})"
    lines = [
        f"{word}: {label} for patient reference {ref}.",
        f"Date: {when}",
        f"Alert: {alert.alert_id}",
        "",
        *_open_tracker(ref, tracker_command),
        *_ack_lines(code, link),
    ]
    if severity == Severity.URGENT:
        lines += ["", "If nobody acknowledges this alert in the tracker, it is escalated "
                      "to the next role on the roster."]
    return _message(alert, alert.kind, severity, subject, sms, lines)


def render_escalation(
    alert: AlertLike, *, level: int, tracker_command: str = TRACKER_COMMAND,
    link: str | None = None, reply_code: bool = True,
) -> Message:
    """The message sent to escalation ``level`` (1, 2, …) for an unacknowledged alert.

    Kind ``escalation``, severity ``urgent``; the label is the original alert's label.
    """
    if not 1 <= level <= 99:
        raise ValueError("escalation level must be between 1 and 99")
    ref = check_patient_ref(alert.patient_ref)
    label = label_for(alert.kind, _check_severity(alert.severity))
    when = alert.due_on.isoformat()
    code = _code(alert, reply_code)
    head = f"URGENT escalated L{level}: {label} for {ref}, {when}."
    sms = _sms(head, code, link, plain=f"{head} Open the tracker.")
    subject = f"[URGENT] Escalated (level {level}): {ref}: {label} ({when})"
    lines = [
        f"URGENT: an alert was not acknowledged in time and is escalated to you "
        f"(level {level}).",
        f"What: {label} for patient reference {ref}.",
        f"Date: {when}",
        f"Alert: {alert.alert_id}",
        "",
        *_open_tracker(ref, tracker_command),
        *_ack_lines(code, link),
    ]
    return _message(alert, MessageKind.ESCALATION, Severity.URGENT, subject, sms, lines)


class _DigestRow(NamedTuple):
    rank: int  # negative severity rank: urgent first
    due_on: date
    ref: str
    label: str
    severity: Severity


def render_digest(
    alerts: Sequence[AlertLike], *, on: date, tracker_command: str = TRACKER_COMMAND
) -> Message:
    """The morning digest for ``on``: one line per alert (reference, label, date, severity),
    urgent first, then by date and reference.

    ``alert_id`` is ``digest-<on>-<hash of the alert ids>`` (the same set gives the same
    id); ``patient_ref`` is empty; ``severity`` is the highest among the alerts (``info``
    for an empty digest).
    """
    rows: list[_DigestRow] = []
    for alert in alerts:
        severity = _check_severity(alert.severity)
        rows.append(_DigestRow(-_RANK[severity], alert.due_on,
                               check_patient_ref(alert.patient_ref),
                               label_for(alert.kind, severity), severity))
    rows.sort()
    ids = sorted(str(a.alert_id) for a in alerts)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    top: Severity = rows[0].severity if rows else Severity.INFO
    patients = len({row.ref for row in rows})
    count = (f"{len(rows)} open item{'s' if len(rows) != 1 else ''} for {patients} "
             f"patient{'s' if patients != 1 else ''}")
    day = on.isoformat()
    urgent = sum(1 for row in rows if row.severity == Severity.URGENT)
    flag = f" ({urgent} URGENT)" if urgent else ""
    sms = f"Daily summary {day}: {count}{flag}. Open the tracker for details."
    subject = f"Daily summary {day}: {count}{flag}"
    body = [f"Daily summary for {day}: {count}{flag}.", ""]
    if rows:
        width = max(len(row.ref) for row in rows)
        body += [f"  {row.ref:<{width}}  {row.label:<20}  {row.due_on.isoformat()}  "
                 f"{SEVERITY_WORDS[row.severity]}" for row in rows]
    else:
        body.append("  Nothing is open.")
    body += ["", f"Worklist: {tracker_command} due", *_open_tracker("<ref>", tracker_command)]
    return Message(
        alert_id=f"digest-{day}-{digest}", patient_ref="", kind=MessageKind.DIGEST,
        severity=top,
        subject=subject, sms_text=_check_sms(sms), email_text="\n".join(body) + "\n",
        due_on=on)


def render_notice(text: str, *, notice_id: str, on: date) -> Message:
    """A message about the alerting itself (an opt-out notice to the roster owner, a test
    message): no patient, nothing clinical; ``text`` must be ASCII and short."""
    return Message(alert_id=notice_id, patient_ref="", kind=NOTICE_KIND,
                   severity=Severity.INFO, subject=text[:78], sms_text=_check_sms(text),
                   email_text=text + "\n", due_on=on)


def _open_tracker(ref: str, command: str) -> list[str]:
    return [
        "This message deliberately carries no clinical detail. Open the tracker for it:",
        f"    {command} status {ref}",
    ]


def _message(alert: AlertLike, kind: str, severity: Severity, subject: str, sms: str,
             lines: list[str]) -> Message:
    return Message(
        alert_id=str(alert.alert_id), patient_ref=alert.patient_ref, kind=kind,
        severity=severity, subject=subject, sms_text=_check_sms(sms),
        email_text="\n".join(lines) + "\n", due_on=alert.due_on)


def _check_severity(severity: str) -> Severity:
    for known in SEVERITIES:
        if severity == known:
            return known
    raise ValueError(f"unknown severity {severity!r} (expected one of {', '.join(SEVERITIES)})")


def _check_sms(text: str) -> str:
    if len(text) >= SMS_LIMIT or not text.isascii():
        raise ValueError(f"SMS text must be ASCII and under {SMS_LIMIT} characters")
    return text
