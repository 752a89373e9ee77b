"""Shared test support: real local servers (Twilio-compatible HTTP, SMTP) and their fixtures.

Register the fixtures with ``pytest_plugins = ["tests.support.twilio_server",
"tests.support.smtp_server"]`` (in a test module or the root ``conftest.py``).
"""

import pytest

# Plugin modules get pytest's assertion rewriting even when a test imports them first.
pytest.register_assert_rewrite("tests.support.twilio_server", "tests.support.smtp_server")
