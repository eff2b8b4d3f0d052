"""Trackers: context managers composed around each measured span (memory; energy later)."""
from llmbench.trackers.memory import MemoryPeak, MemoryTracker

__all__ = ["MemoryPeak", "MemoryTracker"]
