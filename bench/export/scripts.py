"""deploy/serve-<name>.sh: one start script per self-hosted deployment.

A script starts the deployment's replicas on their consecutive ports (the ports the gateway config
points at), each in the background with its own log, stops them all on INT/TERM or when any one
exits, and waits. Paths on the measuring machine are defaults that the environment overrides
(LLAMA_SERVER, GGUF, VLLM, MODEL, HOST, LOG_DIR), so the same script runs on a copy of the model.
"""
from __future__ import annotations

import shlex

from llmbench import __version__
from llmbench.export.launch import HOST
from llmbench.recommend.naming import slug
from llmbench.recommend.serving import LLAMA_CPP, VLLM

# A replica that ignores SIGTERM for this long is killed (llama-server stops in well under a second).
GRACE_S = 10


def script_names(srv: list[dict]) -> dict[str, str]:
    """{option id: 'serve-<name>.sh'} for every server a script starts, unique among them (two batch
    sizes of one variant, or one model's plain and cached options, serve under one name)."""
    out: dict[str, str] = {}
    for s in srv:
        if (s.get("launch") or {}).get("engine") not in (LLAMA_CPP, VLLM):
            continue
        base = slug(s["served_name"]) or "model"
        name, n = base, 1
        while f"serve-{name}.sh" in out.values():
            n += 1
            name = f"{base}-bs{s.get('max_batch_size')}" if n == 2 and s.get("max_batch_size") else f"{base}-{n}"
        out[s["option"]] = f"serve-{name}.sh"
    return out


def _argv_text(argv: list[str], subst: dict[str, str]) -> str:
    # Quoted words, except the values the environment may override, written as "$VAR".
    return " ".join(f'"${subst[a]}"' if a in subst else shlex.quote(a) for a in argv)


_STOP = f"""pids=()
stop() {{
  trap - INT TERM EXIT
  ((${{#pids[@]}})) || return 0
  kill -TERM "${{pids[@]}}" 2>/dev/null || true
  for _ in $(seq {GRACE_S * 10}); do
    kill -0 "${{pids[@]}}" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "${{pids[@]}}" 2>/dev/null || true
  wait 2>/dev/null || true
}}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT
"""


def _checks(engine: str, name: str, launch: dict) -> str:
    if engine == LLAMA_CPP:
        gguf = launch.get("gguf") or {}
        sha = gguf.get("sha256") or ""
        lines = [f'found="$(command -v -- "$LLAMA_SERVER" || true)"',
                 f'[[ -n $found ]] || {{ echo "{name}: no llama-server at $LLAMA_SERVER (set LLAMA_SERVER)" >&2; exit 2; }}',
                 'LLAMA_SERVER="$found"',
                 f'[[ -f $GGUF ]] || {{ echo "{name}: no GGUF at $GGUF (set GGUF)" >&2; exit 2; }}']
        if sha:
            lines.append(f'if [[ -z ${{SKIP_SHA256:-}} ]] && ! echo "{sha}  $GGUF" | sha256sum -c --status; then\n'
                         f'  echo "{name}: $GGUF is not the measured GGUF (sha256 {sha}; SKIP_SHA256=1 starts it anyway)" >&2; exit 2\nfi')
        return "\n".join(lines)
    return f'command -v "$VLLM" >/dev/null || {{ echo "{name}: no vllm command ($VLLM; set VLLM)" >&2; exit 2; }}'


def serve_script(s: dict, name: str, run_id: str) -> str:
    """The bash text of one deployment's start script."""
    la = s["launch"]
    engine, ports, cmds = la["engine"], la["ports"], la["commands"]
    if engine == LLAMA_CPP:
        gguf = la["model_file"]
        env = {"LLAMA_SERVER": cmds[0][0], "GGUF": gguf}
        subst = {cmds[0][0]: "LLAMA_SERVER", gguf: "GGUF", HOST: "HOST"}
        sha = (la.get("gguf") or {}).get("sha256") or "not recorded"
        what = (f"llama.cpp llama-server {la.get('version') or ''}".rstrip() + f", measured as served; GGUF {gguf} "
                f"(sha256 {sha}); --parallel {la.get('parallel')}, --ctx-size {la.get('ctx_size')}")
    else:
        model = cmds[0][2]
        env = {"VLLM": cmds[0][0], "MODEL": model}
        subst = {cmds[0][0]: "VLLM", model: "MODEL", HOST: "HOST"}
        what = f"vLLM, NOT MEASURED HERE ({la.get('note') or 'the run did not serve this option'}); --max-num-seqs {la.get('max_num_seqs')}"
    head = [
        "#!/usr/bin/env bash",
        f"# {s['served_name']}: {len(ports)} replica(s) of {s['option']} ({s['role']}) on ports {', '.join(map(str, ports))}.",
        f"# {what}.",
        f"# Written by llmbench {__version__} for run {run_id}; gateway/litellm.yaml points at exactly these ports.",
        "# Ctrl-C or SIGTERM stops every replica; so does any one replica exiting. Logs: $LOG_DIR/<name>-<port>.log.",
        "set -euo pipefail",
        *(f'{k}="${{{k}:-{v}}}"' for k, v in env.items()),
        f'HOST="${{HOST:-{HOST}}}"',
        'LOG_DIR="${LOG_DIR:-$(cd "$(dirname "$0")" && pwd)/logs}"',
        _checks(engine, name, la),
        *(['export LD_LIBRARY_PATH="$(dirname "$LLAMA_SERVER")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # its libggml*.so sit beside it']
          if engine == LLAMA_CPP else []),
        'mkdir -p "$LOG_DIR"',
        _STOP,
    ]
    body = []
    for i, (port, argv) in enumerate(zip(ports, cmds)):
        dev = f"CUDA_VISIBLE_DEVICES={i} " if engine == VLLM else ""
        log = f'"$LOG_DIR/{slug(s["served_name"])}-{port}.log"'
        body += [f"{dev}{_argv_text(argv, subst)} >{log} 2>&1 &", "pids+=($!)",
                 f'echo "{name}: replica {i + 1} of {len(ports)} on http://$HOST:{port}/v1 (pid $!, log {log[1:-1]})"']
    tail = ["# The first replica to exit ends the deployment (the EXIT trap stops the others).",
            "rc=0", "wait -n || rc=$?", f'echo "{name}: a replica exited (status $rc): stopping the others" >&2',
            'exit $((rc ? rc : 1))']
    return "\n".join(head + body + tail) + "\n"


def deploy_scripts(srv: list[dict], run_id: str) -> dict[str, str]:
    """{file name: script text} for every self-hosted deployment (endpoints and API models have none)."""
    names = script_names(srv)
    return {names[s["option"]]: serve_script(s, names[s["option"]], run_id) for s in srv if s["option"] in names}
