"""No managed server outlives llmbench: kernel death signal, atexit, and SIGTERM/SIGINT hooks.

Three layers, because each one alone has a hole:
- PR_SET_PDEATHSIG=SIGKILL, set in the child before exec: the kernel kills the server when the
  thread that started it dies, even when llmbench gets SIGKILL and runs no Python at all. (It is
  the starting *thread*: start servers from a thread that lives as long as they should.)
- an atexit hook: a normal exit, or an exception that ends the interpreter.
- SIGTERM/SIGINT handlers: SIGTERM's default action ends Python without atexit; and a server in
  its own session does not get the terminal's Ctrl-C, so llmbench must pass it on.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
try:  # loaded in the parent: the child between fork and exec should do as little as possible
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not glibc/Linux
    _LIBC = None

_live: dict[int, Callable[[float], None]] = {}  # id(server) -> its stop(grace_s)
_lock = threading.Lock()
_installed = False


def child_setup(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: die with the parent (SIGKILL), and do not start at all if it is already gone."""
    def setup() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
    return setup


def register(key: int, stop: Callable[[float], None]) -> None:
    """Track a live server; the hooks are installed on first use."""
    global _installed
    with _lock:
        _live[key] = stop
        if not _installed:
            _installed = True
            atexit.register(stop_all)
            _install_signal_hooks()


def unregister(key: int) -> None:
    with _lock:
        _live.pop(key, None)


def live_count() -> int:
    return len(_live)


def stop_all(grace_s: float = 3.0) -> None:
    """Stop every tracked server (atexit, signals)."""
    with _lock:
        stops = list(_live.values())
    for stop in stops:
        try:
            stop(grace_s)
        except Exception:  # noqa: BLE001 - stopping the others matters more than one error
            pass


def _install_signal_hooks() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; PDEATHSIG and atexit still hold
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            stop_all()
            if callable(previous):
                previous(signum, frame)  # SIGINT: Python's KeyboardInterrupt, or the caller's own handler
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(sig, handler)


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to a process group that may already be gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the process group `proc` leads (started with start_new_session), then SIGKILL
    to whatever is left in it after `grace_s`, leader included; waits for the leader."""
    signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    signal_group(proc.pid, signal.SIGKILL)  # children that outlived their leader, too
    proc.wait()


def tail_lines(path: Path, n: int) -> str:
    """The last `n` lines of a log file ("" when it cannot be read)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])
