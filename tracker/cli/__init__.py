"""The ``cno-tracker`` command line."""
