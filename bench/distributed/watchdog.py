"""Ends a local Ray cluster's processes when the llmbench process that started it dies, SIGKILL included.

Ray's own reaper stops the raylets and workers when their starter dies, but its dashboard and
runtime-env agents were seen living on (30 s and more) after a SIGKILLed driver. This process,
started in its own session (a Ctrl-C to the terminal's group does not reach it), keeps a list of
the starter's descendants while it lives and kills those still running once it is gone. A normal
end of the run stops the cluster first and then this process.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import psutil


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(parent_pid: int, temp: str, poll_s: float = 0.5) -> None:
    """Until parent_pid ends, note its descendants; then kill the ones left and remove the temp folder."""
    parent = psutil.Process(parent_pid)
    seen: dict[int, psutil.Process] = {}
    while _alive(parent):
        try:
            seen.update({c.pid: c for c in parent.children(recursive=True) if c.pid != os.getpid()})
        except psutil.Error:
            pass
        time.sleep(poll_s)
    for proc in seen.values():
        if _alive(proc):  # psutil's is_running checks the start time too: a reused pid is left alone
            try:
                proc.kill()
            except psutil.Error:
                pass
    shutil.rmtree(temp, ignore_errors=True)


def start(temp: str) -> subprocess.Popen:
    """A watchdog for this process and the cluster processes it starts (their session folder: temp)."""
    return subprocess.Popen([sys.executable, "-m", "llmbench.distributed.watchdog", str(os.getpid()), temp],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
