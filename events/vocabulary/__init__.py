"""Every event type, by name. The class name is the contract's ``type``."""

from __future__ import annotations

from events.errors import UnknownEventType
from events.vocabulary.access import RecordAccessed
from events.vocabulary.accounts import (
    AccountCreated,
    AccountDisabled,
    AccountLocked,
    AccountPasswordChanged,
    AccountRoleChanged,
    AccountTokenIssued,
    AccountTokenRevoked,
)
from events.vocabulary.alerting import (
    AlertAcknowledged,
    AlertCancelled,
    AlertDelivered,
    AlertEscalated,
    AlertFailed,
    AlertRaised,
    AlertSent,
    AlertUndelivered,
)
from events.vocabulary.common import EventData, ImagingLesion, Lesion
from events.vocabulary.corrections import EntryCorrected, EntryVoided
from events.vocabulary.labs import UNITS, LabResultRecorded, to_canonical
from events.vocabulary.observations import BiopsyRecorded, ImagingRecorded, VisitRecorded
from events.vocabulary.patient import (
    ComorbidityRecorded,
    DiagnosisAssessed,
    JanssonCriteria,
    PatientEnrolled,
    ProcedureRecorded,
)
from events.vocabulary.staffing import (
    RosterOwnerTold,
    SmsOptedIn,
    SmsOptedOut,
    TestMessageSent,
)
from events.vocabulary.treatment import (
    AdverseEventRecorded,
    InfusionAdministered,
    MedicationChanged,
    MedicationStarted,
    MedicationStopped,
)

EVENT_TYPES: dict[str, type[EventData]] = {
    cls.__name__: cls
    for cls in (
        PatientEnrolled, DiagnosisAssessed, VisitRecorded, LabResultRecorded, ImagingRecorded,
        BiopsyRecorded, ComorbidityRecorded, MedicationStarted, MedicationChanged,
        MedicationStopped, InfusionAdministered, AdverseEventRecorded, ProcedureRecorded,
        EntryVoided, EntryCorrected,
        AlertRaised, AlertSent, AlertFailed, AlertEscalated, AlertAcknowledged, AlertCancelled,
        AlertDelivered, AlertUndelivered,
        AccountCreated, AccountRoleChanged, AccountPasswordChanged, AccountDisabled,
        AccountLocked, AccountTokenIssued, AccountTokenRevoked, RecordAccessed,
        SmsOptedOut, SmsOptedIn, RosterOwnerTold, TestMessageSent,
    )
}


def data_class_for(event_type: str) -> type[EventData]:
    """The data model of a type name (:class:`UnknownEventType` for an unknown one)."""
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}") from None


IMPORTABLE_TYPES: dict[str, type[EventData]] = {
    name: cls for name, cls in EVENT_TYPES.items() if cls.importable
}

__all__ = [
    "EVENT_TYPES", "IMPORTABLE_TYPES", "UNITS",
    "AdverseEventRecorded", "AlertAcknowledged", "AlertCancelled", "AlertDelivered",
    "AlertEscalated", "AlertFailed", "AlertRaised", "AlertSent", "AlertUndelivered",
    "BiopsyRecorded", "ComorbidityRecorded",
    "DiagnosisAssessed", "EntryCorrected", "EntryVoided", "EventData", "ImagingLesion",
    "ImagingRecorded", "InfusionAdministered", "JanssonCriteria", "LabResultRecorded", "Lesion",
    "MedicationChanged", "MedicationStarted", "MedicationStopped", "PatientEnrolled",
    "ProcedureRecorded", "RosterOwnerTold", "SmsOptedIn", "SmsOptedOut", "TestMessageSent",
    "VisitRecorded", "data_class_for", "to_canonical",
]
