"""Capacity planning from measured service times: fit, queue simulation, replica search, validation.

`plan_option` (capacity.py) is the entry point for other stages; `llmbench plan` is its command.
"""
from llmbench.planner.capacity import HOURS_PER_MONTH, plan_option

__all__ = ["HOURS_PER_MONTH", "plan_option"]
