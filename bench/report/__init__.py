"""The report: plots (matplotlib, Agg), report.md and a self-contained report.html; and `compare`."""
