"""The gateway's interaction log: a LiteLLM callback that appends one request record per request.

The emitted gateway/litellm.yaml lists `llmbench.monitor.gateway_log.interaction_log` under
`litellm_settings.callbacks`; the proxy imports it and from then on every model request through the
proxy, streamed or not, answered or failed, becomes one JSON line of the record llmbench's own runs
write to requests.jsonl (records.RequestRecord, run_id and scenario "gateway", point = the model
group that answered: the alias asked for, or its fallback; model/variant = the candidate from the
entry's model_info). The prompt's sha256 is always kept, its text only with `record_prompts: true`.

One line per client request: a failed attempt that LiteLLM retries or falls back from is held back
(by LiteLLM's call id) until the request ends, written only when the request fails as a whole (the
proxy's failure hook), or after PENDING_S should no end ever be reported.

The request path only picks plain values out of LiteLLM's kwargs and puts them on a queue; one
writer thread (logging's QueueListener) builds, validates and writes the line into a
RotatingFileHandler (rotation by size). Settings come from `callback_settings.llmbench_gateway_log`
(path, max_bytes, backups, record_prompts); $LLMBENCH_GATEWAY_LOG overrides the path.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from contextlib import contextmanager
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Iterator

from litellm.integrations.custom_logger import CustomLogger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmbench.monitor.gateway_fields import failure_fields, received_at, record_line, success_fields
from llmbench.monitor.gateway_names import (DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, DEFAULT_PATH, PATH_ENV,
                                            SETTINGS_KEY)

PENDING_S = 120.0  # a failed attempt with no end reported after this long is written as it is
MAX_PENDING = 10_000
QUEUE_SIZE = 100_000  # lines waiting for the writer; beyond it lines are dropped (and counted), never waited for
log = logging.getLogger("llmbench.monitor.gateway_log")


class LogSettings(BaseModel):
    """Where and how the log is written (callback_settings.llmbench_gateway_log, every key optional)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    path: Path = Path(DEFAULT_PATH)
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024)
    backups: int = Field(DEFAULT_BACKUPS, ge=1)
    record_prompts: bool = False

    @classmethod
    def from_dict(cls, d: dict | None, env: dict | None = None) -> "LogSettings":
        """The settings, $LLMBENCH_GATEWAY_LOG over the path, relative paths from the working
        directory; ValueError in one line naming the key that is wrong."""
        env = os.environ if env is None else env
        d = dict(d) if isinstance(d, dict) else ({} if d is None else d)
        try:
            if not isinstance(d, dict):
                raise ValueError("must be a mapping (path, max_bytes, backups, record_prompts)")
            if env.get(PATH_ENV) or d.get("path"):
                d["path"] = Path(str(env.get(PATH_ENV) or d["path"]))
            out = cls(**d)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"callback_settings.{SETTINGS_KEY}.{where}: {err['msg']} (got {err.get('input')!r})") from None
        except ValueError as exc:
            raise ValueError(f"callback_settings.{SETTINGS_KEY} {exc}") from None
        return out.model_copy(update={"path": out.path.expanduser().absolute()})


class _LineFormatter(logging.Formatter):
    """Turns a queued request's plain values into its JSON line (on the writer thread)."""

    def __init__(self, record_prompts: bool, first_id: int) -> None:
        super().__init__()
        self.record_prompts = record_prompts
        self.next_id = first_id

    def format(self, record: logging.LogRecord) -> str:
        # RotatingFileHandler formats twice (once to decide on rotation): build the line once.
        line = getattr(record, "line", None)
        if line is None:
            self.next_id += 1
            line = record.line = record_line(record.msg, self.next_id, self.record_prompts)  # type: ignore[arg-type]
        return line


class InteractionLog(CustomLogger):
    """The object `litellm_settings.callbacks` names: one request record per request through the proxy."""

    def __init__(self, settings: LogSettings) -> None:
        super().__init__()
        self.settings = settings
        settings.path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(settings.path, maxBytes=settings.max_bytes, backupCount=settings.backups,
                                      encoding="utf-8")
        # Ids count up from the start's microsecond: unique across restarts of one proxy (below 2**53, JSON-safe).
        handler.setFormatter(_LineFormatter(settings.record_prompts, int(time.time() * 1e6)))
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._listener = QueueListener(self._queue, handler)
        self._handler = handler
        self._pending: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._lock = threading.Lock()
        # Time each hook took on the request path, and its own thread's CPU (the rest: waiting for the GIL, the OS).
        self.hook_s: deque[float] = deque(maxlen=100_000)
        self.hook_cpu_s: deque[float] = deque(maxlen=100_000)
        self.queued = self.dropped = 0
        self._closed = False
        self._listener.start()
        atexit.register(self.close)

    def close_on_sigterm(self) -> None:
        """The proxy dies of SIGTERM without running atexit: write what is held first, then die as before."""
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is not threading.main_thread() or previous == signal.SIG_IGN:
            return

        def on_term(signum, frame) -> None:
            # From another thread, with a bound: the signal may have interrupted this thread inside a lock close needs.
            closer = threading.Thread(target=self.close, daemon=True)
            closer.start()
            closer.join(2.0)
            if callable(previous):
                previous(signum, frame)
                return
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_term)

    # The request path: pick values, queue them, return.
    @contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        """Times a hook (wall and its thread's CPU) and swallows its errors: a log must never fail a request."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        except Exception as exc:  # noqa: BLE001
            log.warning("llmbench gateway log: %s not logged (%s: %s)", what, type(exc).__name__, exc)
        finally:
            self.hook_s.append(time.perf_counter() - t0)
            self.hook_cpu_s.append(time.thread_time() - c0)

    def _put(self, raw: dict) -> None:
        try:
            self._queue.put_nowait(logging.makeLogRecord({"msg": raw}))
            self.queued += 1
        except queue.Full:
            self.dropped += 1

    def _flush_pending(self, older_than: float) -> None:
        now = time.monotonic()
        with self._lock:
            while self._pending:
                key, (t, raw) = next(iter(self._pending.items()))
                if now - t < older_than and len(self._pending) <= MAX_PENDING:
                    break
                del self._pending[key]
                self._put(raw)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time) -> None:
        """A request answered (streamed: once the stream ended): its line, replacing any failed attempt."""
        with self._timed("success event"):
            raw = success_fields(kwargs)
            if raw is not None:
                with self._lock:
                    self._pending.pop(raw["call_id"], None)
                self._put(raw)
            self._flush_pending(PENDING_S)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time) -> None:
        """A failed attempt: held until the request ends (a retry or fallback may still answer it)."""
        with self._timed("failure event"):
            raw = failure_fields(kwargs)
            if raw is not None:
                if raw["call_id"] is None:
                    self._put(raw)
                else:
                    with self._lock:
                        self._pending[raw["call_id"]] = (time.monotonic(), raw)
            self._flush_pending(PENDING_S)

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict, traceback_str: str | None = None):
        """The request failed as a whole: its last attempt's line (or one from the request when none ran)."""
        with self._timed("failed request"):
            with self._lock:
                held = self._pending.pop(request_data.get("litellm_call_id"), (0.0, None))[1]
            raw = held or failure_fields(request_data, original_exception)
            if raw is not None:
                status = getattr(original_exception, "status_code", None)
                if isinstance(status, int):
                    raw["http_status"] = status  # what the proxy answered the client
                # The request's own receive stamp (an attempt refused before routing carries none).
                raw["received"] = received_at(request_data) or raw["received"]
                self._put(raw)
        return None

    def hook_ms(self, q: float = 0.5, cpu: bool = False) -> float | None:
        """The q-quantile (nearest rank) of the time a hook spent on the request path, or of its own CPU time (ms)."""
        times = sorted(self.hook_cpu_s if cpu else self.hook_s)
        return times[min(len(times) - 1, int(q * len(times)))] * 1e3 if times else None

    def close(self) -> None:
        """Write what is held and queued, stop the writer, say once what was written (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._flush_pending(0.0)
        self._listener.stop()
        self._handler.close()
        p50, p95, c50, c95 = (None if v is None else round(v, 4) for v in
                              (self.hook_ms(q, cpu) for cpu in (False, True) for q in (0.5, 0.95)))
        sys.stderr.write(f"llmbench gateway log: {self.queued} request(s) logged to {self.settings.path}, {self.dropped} "
                         f"dropped; hook p50 {p50} ms, p95 {p95} ms (own CPU p50 {c50} ms, p95 {c95} ms) "
                         f"over {len(self.hook_s)} call(s)\n")
        sys.stderr.flush()


def _start() -> InteractionLog:
    import litellm

    try:
        settings = LogSettings.from_dict((getattr(litellm, "callback_settings", None) or {}).get(SETTINGS_KEY))
        started = InteractionLog(settings)
        started.close_on_sigterm()
        return started
    except (ValueError, OSError) as exc:
        # A proxy that runs without the log it was configured with leaves a gap nobody sees: stop it
        # here, with one line and no traceback.
        sys.stderr.write(f"llmbench gateway log: {exc}\n")
        sys.stderr.flush()
        os._exit(2)


_started: InteractionLog | None = None


def __getattr__(name: str) -> InteractionLog:
    # The proxy reads `interaction_log` with getattr: the log starts then, not when a test or a tool imports this module.
    global _started
    if name != "interaction_log":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _started is None:
        _started = _start()
    return _started
