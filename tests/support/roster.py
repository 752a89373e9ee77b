"""The fictitious staff the worker tests and benchmarks send to (never real numbers)."""

from __future__ import annotations

NURSE_PHONE = "+34600000001"
CONSULTANT_PHONE = "+34600000003"
RHEUM_EMAIL = "rheum.b@example.org"

NURSE_AND_RHEUMATOLOGIST = f"""
[[staff]]
id = "nurse.a"
name = "Nurse A"
roles = ["nurse"]
phone = "{NURSE_PHONE}"
on_call = true
preferred_channel = "sms"

[[staff]]
id = "rheum.b"
name = "Rheumatologist B"
roles = ["rheumatologist"]
email = "{RHEUM_EMAIL}"
preferred_channel = "email"
"""

CONSULTANT = f"""
[[staff]]
id = "consult.c"
name = "Consultant C"
roles = ["on_call_consultant"]
phone = "{CONSULTANT_PHONE}"
on_call = true
preferred_channel = "sms"
"""
