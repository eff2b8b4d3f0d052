"""`python -m llmbench` is the same as the `llmbench` command."""
from llmbench.cli import main

main()
