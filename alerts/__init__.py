"""Alerts: pure rules from projection state to due items, PHI-free message rendering,
the outbox, delivery channels (Twilio SMS, SMTP email, console/file) and the worker.

Nothing is created at import time: channels, clients and the scheduler are built by the
composition root and passed in.
"""
