"""Instruction sets the native llama.cpp build must leave out: those the CPU lists but cannot run.

The build is native (-march=native), so the compiler emits every instruction set the CPU reports.
Some virtual machines report AMX (Sapphire Rapids and later) without enabling it: the kernel grants
the tile permission, then the first tile instruction traps, and llama-server dies with SIGILL on its
warm-up decode (measured on a Firecracker VM, kernel 6.18, December 2026). A ten-line C program that
configures and zeroes one tile says, before the five-minute build, whether AMX really runs here.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# -mno-* given explicitly wins over what -march=native implies, whatever their order (GCC and Clang).
AMX_OFF = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
_PROBE = r"""
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
struct cfg { unsigned char palette, start; unsigned char pad[14]; unsigned short colsb[16]; unsigned char rows[16]; };
int main(void) {
    struct cfg c;
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */)) return 3;
    memset(&c, 0, sizeof c);
    c.palette = 1; c.colsb[0] = 64; c.rows[0] = 16;
    _tile_loadconfig(&c);
    _tile_zero(0);
    _tile_release();
    return 0;
}
"""


def cpu_lists_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the kernel reports AMX tiles among the CPU's flags."""
    try:
        return " amx_tile" in cpuinfo.read_text()
    except OSError:
        return False


def amx_runs(work: Path) -> bool:
    """Whether a tile instruction runs here: compiled with the C compiler the build will use, and run."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return False
    work.mkdir(parents=True, exist_ok=True)
    src, exe = work / "amx_probe.c", work / "amx_probe"
    src.write_text(_PROBE)
    try:
        subprocess.run([cc, "-O1", "-mamx-tile", str(src), "-o", str(exe)], check=True, capture_output=True, timeout=60)
        return subprocess.run([str(exe)], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def native_flags_off(work: Path) -> tuple[str, ...]:
    """The -mno-* flags the native build needs on this machine (none where what it lists runs)."""
    return AMX_OFF if cpu_lists_amx() and not amx_runs(work) else ()
