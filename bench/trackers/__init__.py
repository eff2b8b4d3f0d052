"""Trackers: context managers composed around each measured span (memory, CPU load; energy later)."""
from llmbench.trackers.cpu import CpuTracker
from llmbench.trackers.memory import MemoryPeak, MemoryTracker

__all__ = ["CpuTracker", "MemoryPeak", "MemoryTracker"]
