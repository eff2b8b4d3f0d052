"""`llmbench verify RUN_DIR [--load planned|RPS|TRACE] [--duration S] [--timeout S] [--no-drill] [--refit [S]] [--json]`."""
from __future__ import annotations

import json
import signal
import sys

import click

REFIT_S = 10.0  # --refit's default: seconds of the closed loop of one client per slot (the single client's: half)


class _Stop(Exception):
    """SIGTERM, turned into an ordinary unwinding so that everything started is stopped on the way out."""


def _on_term(signum, frame) -> None:
    raise _Stop()


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--load", "load", default="planned", show_default=True, metavar="planned|RPS|TRACE",
              help="Poisson at the planned rate, at RPS requests/s, or an Azure-format trace replayed at the planned rate")
@click.option("--duration", "duration_s", type=click.FloatRange(1, 3600), default=30, show_default=True,
              help="seconds of load, sent once through the proxy and once straight to the servers")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 600), default=30, show_default=True,
              help="per request: a request not done by then counts as failed (timeout)")
@click.option("--no-drill", is_flag=True, help="skip the fallback drill (killing the primary's servers)")
@click.option("--no-budget", is_flag=True, help="skip the budget check (driving a proxy past the gateway's rpm/tpm)")
@click.option("--refit", "refit_s", type=click.FloatRange(1, 600), is_flag=False, flag_value=REFIT_S, default=None,
              metavar="[SECONDS]", help=f"just before the load, measure each primary's closed-loop cells again (one client "
              f"for SECONDS/2, one per slot for SECONDS; default {REFIT_S:g}) and predict the load from a model fitted on them "
              "too: `refit` in verify.json is the model's error without the machine's drift since the run")
@click.option("--autoscale", is_flag=True, help="with --load TRACE: carry out deployment.yaml's autoscaling policy with "
              "real replicas on the replayed trace, against its simulation (verify-autoscale.json)")
@click.option("--json", "as_json", is_flag=True, help="print verify.json (verify-autoscale.json) on stdout")
def verify(run_dir: str, load: str, duration_s: float, timeout_s: float, no_drill: bool, no_budget: bool,
           refit_s: float | None, autoscale: bool, as_json: bool) -> None:
    """Start RUN_DIR's recommended deployment (deploy/) behind a real LiteLLM proxy (gateway/litellm.yaml)
    on this machine, send the planned load, and write verify.json: predicted against measured, the
    gateway's added latency, the cost LiteLLM reports, the gateway's rpm/tpm budgets driven past, a
    fallback drill and a verdict. Everything
    started is stopped at the end. The plan held when p95 E2EL is at most 10% above its prediction,
    throughput at least 85% of the planned load and at most 1% of requests failed."""
    from rich.console import Console

    from llmbench.verify.deploy import VerifyFailed
    from llmbench.verify.autoscale_run import verify_autoscale
    from llmbench.verify.run import verify as run
    from llmbench.verify.show import show, show_autoscale

    console = Console(stderr=as_json)
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        say = lambda line: console.print(line, highlight=False, markup=False)  # noqa: E731
        doc = verify_autoscale(run_dir, load, duration_s, timeout_s, progress=say) if autoscale else \
            run(run_dir, load=load, duration_s=duration_s, timeout_s=timeout_s, drill=not no_drill, budget=not no_budget,
                refit_s=refit_s, progress=say)
    except VerifyFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except (KeyboardInterrupt, _Stop):
        click.echo("verify: stopped (everything it started is stopped)", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        sys.stdout.write(json.dumps(doc, default=str, allow_nan=False) + "\n")
    else:
        (show_autoscale if autoscale else show)(doc, console)
