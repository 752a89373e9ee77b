"""Building the worker's parts from :class:`tracker.settings.Settings` (composition root
of the alert side): channels, roster, worker.

Channels: ``sms`` when the three Twilio settings are set, ``email`` when an SMTP host and
sender are set, ``file`` when ``CNO_TRACKER_ALERT_LOG_FILE`` is set; ``console`` when none
of SMS and e-mail is configured (development, demos). Routing falls back to ``file`` then
``console`` for staff whose channels are not configured here.

Roster: ``CNO_TRACKER_ROSTER_FILE``. **[reading]** Without one, development uses a one-line
roster (:data:`DEVELOPMENT_ROSTER`: everything to a ``duty`` desk on the console, no
escalation chain); production refuses to start without a roster file.
"""

from __future__ import annotations

from datetime import datetime

from alerts.channels.base import Channel
from alerts.channels.console import ConsoleChannel, FileChannel, TeeChannel
from alerts.channels.smtp_email import SmtpEmailChannel
from alerts.channels.twilio_sms import MESSAGING_SERVICE_RE, TwilioSmsChannel
from alerts.errors import RosterError
from alerts.links import LinkSigner
from alerts.roster import Roster, load_roster
from alerts.worker import AlertWorker
from tracker.bootstrap import App
from tracker.clock import Clock, FixedClock
from tracker.errors import ConfigurationError
from tracker.settings import Settings

DEVELOPMENT_ROSTER = Roster.model_validate({
    "staff": [{"id": "duty.desk", "name": "Duty desk (development roster)",
               "roles": ["duty"], "on_call": True, "preferred_channel": "console"}],
    "routing": {"default": ["duty"]},
})


def build_channels(settings: Settings) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    service = settings.twilio_messaging_service_sid
    sender = settings.twilio_from_number
    if service is None and sender is not None and MESSAGING_SERVICE_RE.fullmatch(sender):
        service, sender = sender, None  # a Messaging Service SID given as the sender
    twilio = {"CNO_TRACKER_TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
              "CNO_TRACKER_TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
              # a Messaging Service SID stands in for the from number
              "CNO_TRACKER_TWILIO_FROM_NUMBER": sender or service}
    if any(v is not None for v in twilio.values()):
        missing = [k for k, v in twilio.items() if v is None]
        if missing:
            missing = [k if k != "CNO_TRACKER_TWILIO_FROM_NUMBER" else
                       f"{k} (or CNO_TRACKER_TWILIO_MESSAGING_SERVICE_SID)" for k in missing]
            raise ConfigurationError(f"SMS alerts need {', '.join(missing)} as well")
        assert settings.twilio_account_sid and settings.twilio_auth_token
        try:
            channels["sms"] = TwilioSmsChannel(
                settings.twilio_account_sid, settings.twilio_auth_token,
                sender if service is None else None,
                messaging_service_sid=service, base_url=settings.twilio_base_url,
                urgent_validity_seconds=settings.twilio_urgent_validity_seconds,
                status_callback=status_callback_url(settings.public_url))
        except ValueError as exc:
            raise ConfigurationError(f"Twilio settings: {exc}") from None
    if settings.smtp_host is not None or settings.smtp_sender is not None:
        if not settings.smtp_host or not settings.smtp_sender:
            raise ConfigurationError(
                "e-mail alerts need both CNO_TRACKER_SMTP_HOST and CNO_TRACKER_SMTP_SENDER")
        try:
            channels["email"] = SmtpEmailChannel(
                settings.smtp_host, settings.smtp_port, sender=settings.smtp_sender,
                username=settings.smtp_username, password=settings.smtp_password,
                security=settings.smtp_security, timeout=settings.smtp_timeout_seconds)
        except ValueError as exc:
            raise ConfigurationError(f"SMTP settings: {exc}") from None
    if settings.alert_log_file is not None:
        channels["file"] = FileChannel(settings.alert_log_file)
    if "sms" not in channels and "email" not in channels:
        # the embedded default: the console, with a copy of every message in the file
        channels["console"] = (TeeChannel(ConsoleChannel(), FileChannel(settings.alert_log_file))
                               if settings.alert_log_file is not None else ConsoleChannel())
    return channels


#: the path Twilio posts message statuses to (web/routes/twilio.py)
STATUS_PATH = "/twilio/status"


def status_callback_url(public_url: str | None) -> str | None:
    """``CNO_TRACKER_PUBLIC_URL`` + ``/twilio/status``; None without a public URL (then
    receipts come by polling only)."""
    return public_url.rstrip("/") + STATUS_PATH if public_url else None


def build_roster(settings: Settings) -> Roster:
    if settings.roster_file is None:
        if settings.environment == "production":
            raise ConfigurationError("production needs CNO_TRACKER_ROSTER_FILE (the staff roster)")
        return DEVELOPMENT_ROSTER
    try:
        return load_roster(settings.roster_file)
    except RosterError as exc:
        raise ConfigurationError(f"roster {settings.roster_file}: {exc}") from None


def build_links(settings: Settings) -> LinkSigner | None:
    """The signer of e-mail acknowledgement links: needs ``CNO_TRACKER_PUBLIC_URL`` and
    ``CNO_TRACKER_LINK_KEY``; without either, e-mails carry no link."""
    if settings.public_url is None or settings.link_key is None:
        return None
    try:
        return LinkSigner(settings.link_key.get_secret_value().encode(), settings.public_url)
    except ValueError as exc:
        raise ConfigurationError(f"CNO_TRACKER_LINK_KEY: {exc}") from None


def parse_now(text: str) -> datetime:
    """An ISO 8601 instant with its offset (``--now``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"--now {text!r} is not an ISO 8601 instant") from None
    if moment.tzinfo is None:
        raise ConfigurationError("--now needs a UTC offset, e.g. 2016-11-03T08:00:00+01:00")
    return moment


def build_worker(app: App, *, worker_id: str | None = None, batch_size: int = 100,
                 lease_seconds: float = 120.0, poll_seconds: float = 30.0,
                 now: str | None = None, clock: Clock | None = None,
                 channels: dict[str, Channel] | None = None,
                 roster: Roster | None = None) -> AlertWorker:
    """The worker for ``app``; ``now`` (an ISO instant) pins the clock (demos, replays)."""
    if now is not None:
        clock = FixedClock(parse_now(now))
    return AlertWorker(
        app.store, app.protocol, clock or app.clock,
        channels if channels is not None else build_channels(app.settings),
        roster if roster is not None else build_roster(app.settings),
        worker_id=worker_id, batch_size=batch_size, lease_seconds=lease_seconds,
        poll_seconds=poll_seconds, links=build_links(app.settings),
        public_url=app.settings.public_url,
        receipt_poll_seconds=app.settings.receipt_poll_seconds,
        receipt_poll_batch=app.settings.receipt_poll_batch)
