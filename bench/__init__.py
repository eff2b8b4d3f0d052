"""llmbench: measure candidate LLMs on this machine and turn the figures into a deployment decision."""

__version__ = "0.1.0"
