"""The `llmbench` command line: one group, one module per command under `llmbench.commands`."""
from __future__ import annotations

import os
import sys

import click


def _openmp_wait_policy() -> None:
    """Passive OpenMP waits when the machine is already busy; the engines' default otherwise.

    Idle OpenMP workers spin by default. On a dedicated machine that is what production does and
    it is faster (torch batch-2 decode on 2 cores: 20 ms a step spinning, 28 ms passive); on a
    machine that is already busy the spinning workers steal the cores the measured threads need
    (torch fell from about 245 to 15 tok/s). Decided before any library starts its thread pool;
    a user's own setting wins. run.json records the policy and the load seen at start.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    try:
        busy = os.getloadavg()[0] >= 0.75 * (os.cpu_count() or 1)
    except OSError:
        busy = False
    if busy:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


_openmp_wait_policy()

from llmbench import __version__
from llmbench.errors import BadInput


class _Group(click.Group):
    """Turns a BadInput anywhere below into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):  # noqa: D401 - click's hook
        try:
            return super().invoke(ctx)
        except BadInput as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="llmbench")
def main() -> None:
    """Profile LLMs on this machine and turn the measurements into a deployment decision."""


def _register() -> None:
    # Imported here so that `llmbench --help` stays fast: each module imports its heavy
    # libraries inside its command functions.
    from llmbench.commands import (cache, compare, compress, drift, engines, feedback, guard, hardware, plan, quantize, recommend,
                                   report, run, serve, verify)

    for module in (run, hardware, quantize, compress, cache, plan, recommend, report, compare, engines, serve, verify, drift, guard,
                   feedback):
        commands = [c for c in vars(module).values()
                    if isinstance(c, click.Command) and getattr(c.callback, "__module__", None) == module.__name__]
        nested = {id(sub) for c in commands if isinstance(c, click.Group) for sub in c.commands.values()}
        for command in commands:
            if id(command) not in nested:  # a group's subcommands stay under their group
                main.add_command(command)


_register()
