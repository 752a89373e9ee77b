"""The installed package's version (a module of its own: the entry point needs it at
start-up, before any command's imports)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    try:
        return version("cno-tracker")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"
