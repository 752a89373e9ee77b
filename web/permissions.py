"""The permission matrix: which role may do which action. One module, checked on every
route by one dependency (:func:`web.deps.requires`), documented in the README.

Minimum necessary: ``admin`` manages accounts and sees no clinical data; ``auditor`` reads
everything and writes nothing; ``integration`` (the FHIR endpoint's machine account) may
write and never read. The roles are :class:`tracker.accounts.Role` (one vocabulary with
the accounts and the roster's routing roles)."""

from __future__ import annotations

from enum import StrEnum

from tracker.accounts import Role


class Action(StrEnum):
    VIEW_WARD = "view_ward"  # the ward list
    VIEW_PATIENT = "view_patient"  # a patient page, its chart and timeline
    EXPORT = "export"  # CSV export of the ward list
    VIEW_ALERTS = "view_alerts"
    ACK_ALERT = "ack_alert"
    ENROL = "enrol"
    RECORD_VISIT = "record_visit"
    RECORD_LAB = "record_lab"
    RECORD_INFUSION = "record_infusion"
    PRESCRIBE = "prescribe"  # medication start, change, stop
    VOID_CORRECT = "void_correct"
    VIEW_AUDIT = "view_audit"  # access history, user activity, verify
    VIEW_ADMIN = "view_admin"  # accounts, roster, worker health
    MANAGE_ACCOUNTS = "manage_accounts"
    FHIR_WRITE = "fhir_write"


_READ_CLINICAL = frozenset({Action.VIEW_WARD, Action.VIEW_PATIENT, Action.EXPORT,
                            Action.VIEW_ALERTS})

MATRIX: dict[Role, frozenset[Action]] = {
    Role.CLINICIAN: _READ_CLINICAL | {
        Action.ACK_ALERT, Action.ENROL, Action.RECORD_VISIT, Action.RECORD_LAB,
        Action.RECORD_INFUSION, Action.PRESCRIBE, Action.VOID_CORRECT},
    Role.NURSE: _READ_CLINICAL | {
        Action.ACK_ALERT, Action.ENROL, Action.RECORD_VISIT, Action.RECORD_LAB,
        Action.RECORD_INFUSION},
    Role.PHARMACIST: _READ_CLINICAL | {Action.ACK_ALERT, Action.RECORD_LAB},
    Role.AUDITOR: _READ_CLINICAL | {Action.VIEW_AUDIT},
    Role.ADMIN: frozenset({Action.VIEW_ADMIN, Action.MANAGE_ACCOUNTS}),
    Role.INTEGRATION: frozenset({Action.FHIR_WRITE}),
}

#: paths served without a login (and without clinical data)
PUBLIC_PATHS = frozenset({"/login", "/logout", "/healthz", "/readyz", "/static",
                          # guarded otherwise: Twilio's signature, the metrics bearer token
                          "/twilio/inbound", "/twilio/status", "/metrics"})


def allowed(role: str, action: Action) -> bool:
    """Whether ``role`` may perform ``action``; an unknown role may do nothing."""
    try:
        return action in MATRIX[Role(role)]
    except ValueError:
        return False


def matrix_markdown() -> str:
    """The matrix as a Markdown table (the README's copy is checked against it)."""
    roles = list(Role)
    lines = ["| action | " + " | ".join(r.value for r in roles) + " |",
             "|---|" + "---|" * len(roles)]
    for action in Action:
        cells = ["yes" if action in MATRIX[r] else "" for r in roles]
        lines.append(f"| `{action.value}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
