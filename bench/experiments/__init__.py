"""Experiment tracking: one tracked run (MLflow) per llmbench results folder, and reading it back.

Imported only when `llmbench run --track` or `compare mlflow:...` asks for it: MLflow is slow to
import, and `llmbench --help` must stay fast.
"""
