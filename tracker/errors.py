"""The documented error tree of the tracker (events' errors are in events.errors).

TrackerError
├── ConfigurationError    settings, protocol or roster refused at start-up
├── ImportRefused         an import with invalid lines: nothing was written
├── NotFound              an unknown patient, event or alert
└── CommandRefused        a command that breaks a rule (e.g. voiding another patient's event)

The CLI translates each into one message a person can act on and a non-zero exit:
2 for bad input, 3 for a concurrency conflict, 4 for not found, 5 for configuration
(6 is ``verify`` finding tampering; anything unexpected is 70 with an error id, see
``tracker.cli.failures``)."""

from __future__ import annotations

from events.errors import Problem


class TrackerError(Exception):
    exit_code = 1


class ConfigurationError(TrackerError):
    exit_code = 5


class NotFound(TrackerError):
    exit_code = 4


class CommandRefused(TrackerError):
    exit_code = 2


class ImportRefused(TrackerError):
    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s); nothing was written")
