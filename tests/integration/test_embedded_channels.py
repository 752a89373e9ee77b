"""The embedded default: alerts print on the console and are kept in a JSON-lines file."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

from alerts.channels.base import Message, Recipient
from alerts.channels.console import ConsoleChannel, FileChannel, TeeChannel
from alerts.wiring import build_channels
from tracker.settings import Settings

MESSAGE = Message(alert_id="a-1", patient_ref="P0007", kind="post_dose_labs_due",
                  severity="warning", subject="[Reminder] P0007: labs due (2015-02-05)",
                  sms_text="Reminder: labs due for P0007, 2015-02-05.",
                  email_text="Reminder: labs due for patient reference P0007.",
                  due_on=date(2015, 2, 5))


def test_the_console_and_the_file_both_get_every_message(tmp_path: Path) -> None:
    out = io.StringIO()
    log = tmp_path / "alerts.jsonl"
    tee = TeeChannel(ConsoleChannel(out), FileChannel(log))
    receipt = tee.send(MESSAGE, Recipient("duty.desk"))
    assert receipt.provider_id == "console-a-1" and tee.name == "console"
    assert "labs due for P0007" in out.getvalue()
    record = json.loads(log.read_text().splitlines()[0])
    assert (record["alert_id"], record["staff_id"]) == ("a-1", "duty.desk")


def test_without_providers_the_console_keeps_a_copy_when_a_log_file_is_set(
        tmp_path: Path) -> None:
    plain = build_channels(Settings(database_url="sqlite://"))
    assert isinstance(plain["console"], ConsoleChannel)
    teed = build_channels(Settings(database_url="sqlite://",
                                   alert_log_file=tmp_path / "alerts.jsonl"))
    assert isinstance(teed["console"], TeeChannel)
    assert "sms" not in teed and "email" not in teed
