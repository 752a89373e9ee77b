"""Synthetic cohorts for demos, tests and benchmarks: seeded, clinically plausible courses
written as interchange lines. ``patient`` simulates one child's course (clinic days, labs,
doses, the event rows it accumulates); ``cohort`` drives it for many children and writes
JSON Lines. Nothing here touches a database."""

from tracker.synthetic.cohort import generate_cohort, write_cohort

__all__ = ["generate_cohort", "write_cohort"]
