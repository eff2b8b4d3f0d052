"""The two kinds of failure the command line tells apart (DESIGN.md: exit 2 and exit 1)."""


class BadInput(Exception):
    """Input that is wrong before anything is measured: one line naming what and where, exit 2."""


class MeasurementFailed(Exception):
    """A cell that failed while measuring (out of memory, corrupt model): recorded, exit 1."""
