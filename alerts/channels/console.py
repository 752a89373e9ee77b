"""Local channels for development, demos and audits: no provider, no account.

- :class:`ConsoleChannel` prints one readable line per message to a text stream.
- :class:`FileChannel` appends one JSON object per message to a file (JSON Lines).

Both return ``provider_id = "console-<alert_id>"`` / ``"file-<alert_id>"`` and raise
:class:`~alerts.errors.TransientDeliveryError` when the stream or file cannot be
written (a full disk or a closed pipe may recover).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TextIO

from alerts.channels.base import DeliveryReceipt, Message, Recipient
from alerts.errors import TransientDeliveryError
from alerts.vocabulary import MessageKind
from tracker.files import private_file


class ConsoleChannel:
    """Print ``[severity] to <staff_id>: <sms_text>`` to ``stream`` (default: the current
    ``sys.stdout``, looked up at send time so captured output works)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def send(self, message: Message, recipient: Recipient) -> DeliveryReceipt:
        stream = self._stream if self._stream is not None else sys.stdout
        line = f"[{message.severity}] to {recipient.staff_id}: {message.sms_text}"
        line = line.replace("\n", " ") + "\n"
        if message.kind == MessageKind.DIGEST:  # the digest's items, as the e-mail lists them
            line += "".join(f"    {row.strip()}\n" for row in message.email_text.splitlines()
                            if row.startswith("  ") and row.strip()
                            and not row.strip().startswith("tracker "))
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: write to a closed file
            raise TransientDeliveryError(
                f"console write failed ({type(exc).__name__})", channel=self.name) from None
        return DeliveryReceipt(provider_id=f"console-{message.alert_id}", channel=self.name)


class FileChannel:
    """Append one JSON line per message to ``path`` (created with its parent folders)."""

    name = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def send(self, message: Message, recipient: Recipient) -> DeliveryReceipt:
        provider_id = f"file-{message.alert_id}"
        record = {
            "provider_id": provider_id,
            "alert_id": message.alert_id,
            "staff_id": recipient.staff_id,
            "patient_ref": message.patient_ref,
            "kind": message.kind,
            "severity": message.severity,
            "due_on": message.due_on.isoformat(),
            "subject": message.subject,
            "sms_text": message.sms_text,
            "email_text": message.email_text,
        }
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        try:
            with private_file(self.path) as handle:  # 0600, folders 0700
                handle.write(line)
        except OSError as exc:
            raise TransientDeliveryError(
                f"alert log file not writable ({type(exc).__name__})",
                channel=self.name) from None
        return DeliveryReceipt(provider_id=provider_id, channel=self.name)


class TeeChannel:
    """Send through ``primary`` and keep a copy through ``copy`` (the embedded default:
    the console for people, a JSON-lines file for the record). The receipt is the
    primary's; a failed copy is a transient failure, so nothing goes unrecorded."""

    def __init__(self, primary: ConsoleChannel, copy: FileChannel) -> None:
        self.primary = primary
        self.copy = copy
        self.name = primary.name

    def send(self, message: Message, recipient: Recipient) -> DeliveryReceipt:
        receipt = self.primary.send(message, recipient)
        self.copy.send(message, recipient)
        return receipt
