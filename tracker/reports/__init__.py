"""Reports people look at: the patient course chart and the cohort table (seed Table 4).

Pure: each takes evaluations or records and returns a figure or a string; only the CLI
(``tracker/cli/reports.py``) reads the store and writes files."""
