"""Delivery channels: one class per provider, all following :class:`alerts.channels.base.Channel`.

Import the concrete channel from its module (``alerts.channels.twilio_sms``,
``alerts.channels.smtp_email``, ``alerts.channels.console``); importing this package
creates nothing and imports no provider library.
"""
