"""The event vocabulary, the envelope, upcasters and the append-only store.

This package imports nothing else of the project's (see docs/architecture)."""
