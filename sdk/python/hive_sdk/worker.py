"""A worker: handlers for capabilities (`@worker.task("summarize")`) and swarms
(`@worker.on_message("council")`), run for the hub over the worker protocol
(docs/protocol.md). It keeps `slots` tasks running at once, heartbeats, reconnects with backoff
(naming the attempts it still holds, so their results count), sends progress, stops a task the
hub cancels, and on `stop()` (or Ctrl-C, SIGTERM) drains: takes no more work, finishes what runs
within `grace`, hands the rest back (a task assigned meanwhile is released unstarted, its attempt
not counted), then closes."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import signal
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import websockets

from .errors import HiveError

log = logging.getLogger("hive_sdk.worker")

#: The least time between two progress frames of one attempt; what comes in between is merged.
PROGRESS_EVERY = 0.1
#: The most output text one progress frame carries (the hub takes 64 KiB).
MAX_OUTPUT_BYTES = 60_000


class Fail(Exception):
    """Raise from a handler to fail the attempt with this message; `retry=False` fails the task
    for good (a bad payload), instead of letting the hub try again."""

    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


class Refused(HiveError):
    """The hub refused the worker itself (a wrong token, a bad hello): retrying cannot help."""


def _pieces(text: str, limit: int) -> list[str]:
    """`text` cut into pieces of at most `limit` bytes of UTF-8, whole characters each."""
    pieces, current, size = [], [], 0
    for char in text:
        width = len(char.encode())
        if size + width > limit and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    if current:
        pieces.append("".join(current))
    return pieces


@dataclass
class Job:
    """One attempt of a task, as a handler gets it."""

    task_id: str
    attempt: int
    capability: str
    payload: Any
    priority: int
    #: The attempt's lease: finish within it.
    timeout_ms: int
    #: Parents' results by id (tasks with `depends_on`); a failed parent maps to its error.
    inputs: dict[str, Any] = field(default_factory=dict)
    failed_inputs: list[str] = field(default_factory=list)
    #: When the lease ends by the hub's clock (seconds since the epoch, as `time.time()`); None
    #: from a hub that does not say. Where the clocks may differ, count `timeout_ms` from the
    #: job's start instead (a little later than the lease's end).
    deadline: float | None = None
    _send: Callable[[dict[str, Any]], None] | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _fraction: float | None = None
    _message: str | None = None
    _output: str = ""
    _last: float = float("-inf")
    _flush: asyncio.TimerHandle | None = None
    _over: bool = False

    def progress(self, fraction: float | None = None, message: str | None = None, output: str | None = None) -> None:
        """Tells whoever watches the task how it is getting on: a fraction done (0-1), a message,
        and text that follows what earlier calls sent (a model's next tokens). Frames go at most
        every 0.1 s, what comes in between merged (the text gathered, the latest fraction and
        message); the rest goes before the result. May be called from a plain (threaded)
        handler too."""
        if self._loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._progress(fraction, message, output)
        else:
            self._loop.call_soon_threadsafe(self._progress, fraction, message, output)

    def _progress(self, fraction: float | None, message: str | None, output: str | None) -> None:
        if self._over:
            return
        if fraction is not None:
            self._fraction = fraction
        if message is not None:
            self._message = message
        if output:
            self._output += output
        assert self._loop is not None
        now = self._loop.time()
        if now - self._last >= PROGRESS_EVERY:
            self.flush()
        elif self._flush is None:
            self._flush = self._loop.call_at(self._last + PROGRESS_EVERY, self.flush)

    def flush(self) -> None:
        """Sends what progress is pending now."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._over or (self._fraction is None and self._message is None and not self._output):
            return
        frame: dict[str, Any] = {"type": "progress", "task_id": self.task_id, "attempt": self.attempt}
        if self._fraction is not None:
            frame["fraction"] = self._fraction
        if self._message is not None:
            frame["message"] = self._message
        pieces = _pieces(self._output, MAX_OUTPUT_BYTES) or [None]
        self._fraction, self._message, self._output = None, None, ""
        assert self._loop is not None
        self._last = self._loop.time()
        for piece in pieces:
            if piece is not None:
                frame["output"] = piece
            if self._send:
                self._send(dict(frame))
            frame.pop("fraction", None)
            frame.pop("message", None)

    def _end(self) -> None:
        """No more progress: the attempt is over (reported, or cancelled)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._over = True


Handler = Callable[[Job], Any]
MessageHandler = Callable[[Any], Any]


async def _call(handler: Callable[[Any], Any], argument: Any) -> Any:
    """A handler's answer: awaited if it is a coroutine function, else run on a thread."""
    if inspect.iscoroutinefunction(handler):
        return await handler(argument)
    result = await asyncio.to_thread(handler, argument)
    if inspect.isawaitable(result):
        return await result
    return result


def _deadline(task: dict[str, Any]) -> float | None:
    """The assignment's `deadline_ms` as seconds since the epoch, or None without one."""
    ms = task.get("deadline_ms")
    return ms / 1000 if isinstance(ms, int) else None


def _json_error(value: Any) -> str | None:
    """Why `value` cannot be sent as JSON, or None."""
    try:
        json.dumps(value)
        return None
    except (TypeError, ValueError) as e:
        return str(e)


class Worker:
    """`hub` is the hub's URL (http or https); `token` an agent token (authentication on);
    `ssl` an `ssl.SSLContext` for a hub with its own certificate; `grace` how long a stopping
    worker lets running handlers finish before it hands their tasks back."""

    def __init__(self, hub: str = "http://127.0.0.1:7700", *, name: str | None = None, slots: int = 1,
                 token: str | None = None, ssl: Any = None, max_backoff: float = 10.0, grace: float = 30.0):
        self.url = hub.rstrip("/").replace("https://", "wss://").replace("http://", "ws://") + "/ws/agent"
        self.name = name or f"{socket.gethostname()}:python"
        self.slots = slots
        self.token = token
        self.ssl = ssl
        self.max_backoff = max_backoff
        self.grace = grace
        self.handlers: dict[str, tuple[Handler, float]] = {}
        self.swarms: dict[str, MessageHandler] = {}
        #: Welcomed by the hub, now (set again after each reconnect).
        self.connected = False
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._jobs: dict[tuple[str, int], Job] = {}
        self._replies: set[asyncio.Task[None]] = set()
        #: Results that found no connection; sent after the next hello.
        self._unsent: list[dict[str, Any]] = []
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def task(self, capability: str, level: float = 1.0) -> Callable[[Handler], Handler]:
        """Registers a handler for `capability`: `def handler(job) -> result` (or async def).
        Its return value (any JSON) is the result; an exception fails the attempt."""

        def register(handler: Handler) -> Handler:
            self.handlers[capability] = (handler, level)
            return handler

        return register

    def on_message(self, group: str) -> Callable[[MessageHandler], MessageHandler]:
        """Joins the swarm `group`: broadcasts to it call `handler(payload)`, whose return value
        is the reply."""

        def register(handler: MessageHandler) -> MessageHandler:
            self.swarms[group] = handler
            return handler

        return register

    def run(self) -> None:
        """Serves until stopped; Ctrl-C or SIGTERM drains first (in the main thread)."""
        asyncio.run(self.serve())

    def stop(self) -> None:
        """Drains: no more work is taken, what runs finishes (within `grace`) and is reported,
        then `serve` ends. May be called from any thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)

    async def serve(self) -> None:
        """Connects, works, and reconnects with backoff until `stop()`. Raises `Refused` when
        the hub refuses the worker itself (a wrong token, a bad hello)."""
        if not self.handlers:
            raise ValueError("no handlers: register one with @worker.task(capability)")
        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        signals = []
        for number in (signal.SIGINT, signal.SIGTERM):
            try:
                self._loop.add_signal_handler(number, self._stopping.set)
                signals.append(number)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread: the caller stops it
        try:
            await self._serve()
        finally:
            for number in signals:
                self._loop.remove_signal_handler(number)

    async def _serve(self) -> None:
        assert self._stopping is not None
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._session()
                failures = 0
            except websockets.exceptions.InvalidStatus as e:
                status = e.response.status_code
                if status in (401, 403):
                    raise Refused(f"the hub refused the worker ({status}): check its token") from e
                log.warning("hub connection refused (%s)", status)
            except (OSError, websockets.exceptions.WebSocketException) as e:
                log.warning("hub connection lost: %s", e)
            self.connected = False
            if self._stopping.is_set():
                break
            failures += 1
            delay = min(self.max_backoff, 0.2 * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                pass
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def _hello(self) -> dict[str, Any]:
        held = [{"task_id": t, "attempt": a} for (t, a) in self._running]
        held += [{"task_id": r["task_id"], "attempt": r["attempt"]} for r in self._unsent]
        return {
            "type": "hello",
            "name": self.name,
            "capabilities": {c: level for c, (_, level) in self.handlers.items()},
            "slots": self.slots,
            "groups": list(self.swarms),
            "running": held[: self.slots],
        }

    async def _session(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with websockets.connect(self.url, additional_headers=headers, ssl=self.ssl,
                                      max_size=64 * 1024 * 1024) as ws:
            await ws.send(json.dumps(self._hello()))
            welcome = json.loads(await ws.recv())
            if welcome.get("type") == "error":
                raise Refused(f"the hub refused the hello: {welcome.get('code')}: {welcome.get('message')}")
            interval = welcome["heartbeat_interval_ms"] / 1000
            self._outbox = asyncio.Queue()
            for result in self._unsent:
                self._outbox.put_nowait(result)
            self._unsent.clear()
            self.connected = True
            writer = asyncio.create_task(self._write(ws, interval))
            drain = asyncio.create_task(self._drain_when_stopped())
            try:
                async for frame in ws:
                    self._handle(json.loads(frame))
            finally:
                drain.cancel()
                outbox, self._outbox = self._outbox, None
                writer.cancel()
                # What was queued but not written goes after the next hello.
                while not outbox.empty():
                    message = outbox.get_nowait()
                    if message["type"] == "result":
                        self._unsent.append(message)

    async def _drain_when_stopped(self) -> None:
        assert self._stopping is not None
        await self._stopping.wait()
        self._send({"type": "drain"})
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=self.grace)
        # Past the grace: hand back what still runs, for another worker to retry at once.
        for (task_id, attempt), work in list(self._running.items()):
            work.cancel()
            self._running.pop((task_id, attempt), None)
            self._send(self._handed_back(task_id, attempt))
        self._send({"type": "close"})

    @staticmethod
    def _handed_back(task_id: str, attempt: int) -> dict[str, Any]:
        return {"type": "result", "task_id": task_id, "attempt": attempt, "ok": False,
                "error": "the worker is stopping", "retry": True}

    async def _write(self, ws: Any, interval: float) -> None:
        assert self._outbox is not None
        outbox = self._outbox
        while True:
            try:
                message = await asyncio.wait_for(outbox.get(), interval)
            except asyncio.TimeoutError:
                message = {"type": "heartbeat"}
            if message["type"] == "close":
                await ws.close()
                return
            try:
                await ws.send(json.dumps(message))
            except BaseException:
                # Not known to have arrived: a result goes again after the next hello (the hub
                # drops a duplicate).
                if message["type"] == "result":
                    self._unsent.append(message)
                raise

    def _send(self, message: dict[str, Any]) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(message)
        elif message["type"] == "result":
            self._unsent.append(message)

    def _handle(self, message: dict[str, Any]) -> None:
        """One frame from the hub."""
        kind = message.get("type")
        if kind == "assign":
            for task in message["tasks"]:
                if self._stopping is not None and self._stopping.is_set():
                    # Assigned before the hub saw our drain: given back unstarted, so the task
                    # keeps its attempts.
                    self._send({"type": "release", "task_id": task["task_id"],
                                "attempt": task["attempt"]})
                    continue
                key = (task["task_id"], task["attempt"])
                self._running[key] = asyncio.create_task(self._work(task))
        elif kind == "cancel":
            key = (message["task_id"], message["attempt"])
            running = self._running.pop(key, None)
            if running:
                running.cancel()
        elif kind == "message":
            reply = asyncio.create_task(self._reply(message))
            self._replies.add(reply)
            reply.add_done_callback(self._replies.discard)
        elif kind == "drain" and self._stopping is not None:
            # Drained by an operator: finish what runs, then stop.
            self._stopping.set()
        elif kind == "error":
            log.warning("the hub refused a frame: %s: %s", message.get("code"), message.get("message"))

    async def _work(self, task: dict[str, Any]) -> None:
        key = (task["task_id"], task["attempt"])
        job = Job(task["task_id"], task["attempt"], task["capability"], task.get("payload"),
                  task.get("priority", 5), task.get("timeout_ms", 30000), task.get("inputs") or {},
                  task.get("failed_inputs") or [], _deadline(task), _send=self._send,
                  _loop=asyncio.get_running_loop())
        result: dict[str, Any] = {"type": "result", "task_id": job.task_id, "attempt": job.attempt}
        try:
            handler, _ = self.handlers[job.capability]
            output = await _call(handler, job)
            why = _json_error(output)
            if why is None:
                result.update(ok=True, output=output)
            else:
                # The same handler would answer the same again: not retried.
                result.update(ok=False, error=f"the handler's result is not JSON: {why}", retry=False)
        except asyncio.CancelledError:
            job._end()
            return  # cancelled by the hub (it ended the attempt), or handed back on a drain
        except Fail as e:
            result.update(ok=False, error=str(e), retry=e.retry)
        except Exception as e:  # a handler's failure is the attempt's, not the worker's
            result.update(ok=False, error=f"{type(e).__name__}: {e}", retry=True)
        finally:
            self._running.pop(key, None)
        job.flush()  # the progress still pending, before the result
        job._end()
        self._send(result)

    async def _reply(self, message: dict[str, Any]) -> None:
        handler = self.swarms.get(message.get("group", ""))
        if handler is None:
            return
        try:
            output = await _call(handler, message.get("payload"))
        except Exception as e:
            log.warning("swarm handler for %s failed: %s", message.get("group"), e)
            return
        why = _json_error(output)
        if why is not None:
            log.warning("swarm handler for %s answered with what is not JSON: %s", message.get("group"), why)
            return
        self._send({"type": "reply", "message_id": message["message_id"], "output": output})
