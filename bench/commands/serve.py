"""`llmbench serve MODEL --variant gguf-q4_k_m`: run llama-server in the foreground on loopback.

How a user tries the engine by hand, and what deployment scripts call: the GGUF variant is built
(or reused) first, the exact command line is printed, then the server runs until Ctrl-C or
SIGTERM, which stop it (no process is left).
"""
from __future__ import annotations

import shlex
import signal
import sys
import time

import click

DEFAULT_CTX_PER_SLOT = 2048


class _Stop(Exception):
    """SIGTERM, turned into an ordinary unwinding so that the server is stopped on the way out."""


def _on_term(signum, frame) -> None:
    raise _Stop()


@click.command()
@click.argument("model")
@click.option("--variant", type=click.Choice(["gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "gguf-q4_0"]),
              default="gguf-q4_k_m", show_default=True, help="the GGUF variant to serve (built when missing)")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="port on 127.0.0.1")
@click.option("--parallel", type=click.IntRange(1, 256), default=1, show_default=True,
              help="server slots: requests decoded at once")
@click.option("--ctx-size", type=click.IntRange(16), default=None,
              help=f"context of all slots together (default: {DEFAULT_CTX_PER_SLOT} per slot)")
@click.option("--threads", type=click.IntRange(1), default=None, help="threads (default: the cores llmbench may use)")
@click.option("--alias", default=None, help="model name the server reports (default: MODEL)")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="server log file (default: a file under the llmbench cache, printed at start)")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1), default=120, show_default=True,
              help="seconds to wait for /health")
def serve(model: str, variant: str, port: int, parallel: int, ctx_size: int | None, threads: int | None,
          alias: str | None, log_path: str | None, timeout_s: float) -> None:
    """Serve MODEL (a Llama/Qwen folder or card:NAME) with llama.cpp's llama-server on 127.0.0.1."""
    from pathlib import Path

    from llmbench.engines.llamacpp import EngineUnavailable, ensure_engine
    from llmbench.engines.llamacpp.gguf import build_gguf, check_convertible
    from llmbench.engines.llamacpp.server import ManagedServer, ServerFailed
    from llmbench.models.source import resolve
    from llmbench.paths import cache_root

    source = resolve(model, where="MODEL")
    check_convertible(source, "MODEL")  # before minutes of building
    err = (lambda line: click.echo(line, err=True))
    try:
        engine = ensure_engine(progress=err)
    except EngineUnavailable as exc:
        err(f"error: {exc}")
        sys.exit(1)
    build = build_gguf(source, variant, engine, log=err)
    log = Path(log_path) if log_path else cache_root() / "serve" / f"{source.name.replace('/', '_').replace(':', '-')}-{variant}-{port}.log"
    server = ManagedServer(engine, build.path, parallel=parallel, ctx_size=ctx_size or parallel * DEFAULT_CTX_PER_SLOT,
                           threads=threads, port=port, log_path=log, alias=alias or source.name)
    click.echo(shlex.join(server.command), nl=True)
    sys.stdout.flush()
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        try:
            server.start(timeout_s)
        except ServerFailed as exc:
            err(f"error: {exc}")
            sys.exit(1)
        err(f"serving {variant} of {source.name} at {server.url} (pid {server.pid}, log {server.log_path}); "
            "Ctrl-C stops it")
        while server.alive():
            time.sleep(0.2)
        err(f"error: llama-server exited by itself (code {server.exit_code}); "
            f"last lines:\n{server.tail()}")
        sys.exit(1)
    except (KeyboardInterrupt, _Stop):
        err("stopping llama-server ...")
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    err("stopped")
