"""The feedback loop: what a production gateway logged, read back and compared with what the run measured."""
