"""A worker: handlers for capabilities (`@worker.task("summarize")`) and swarms
(`@worker.on_message("council")`), run for the hub over the worker protocol
(docs/protocol.md). It keeps `slots` tasks running at once, heartbeats, reconnects with backoff
(naming the attempts it still holds, so their results count), sends progress, stops a task the
hub cancels, and on `stop()` drains: takes no more work, finishes what runs, then closes."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import socket
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import websockets

log = logging.getLogger("hive_sdk.worker")

#: The least time between two progress frames of one attempt; text in between is gathered.
PROGRESS_EVERY = 0.1


class Fail(Exception):
    """Raise from a handler to fail the attempt with this message; `retry=False` fails the task
    for good (a bad payload), instead of letting the hub try again."""

    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


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
    _send: Callable[[dict[str, Any]], None] | None = None
    _unsent: str = ""
    _last: float = 0.0
    _flush: asyncio.TimerHandle | None = None

    def progress(self, fraction: float | None = None, message: str | None = None, output: str | None = None) -> None:
        """Tells whoever watches the task how it is getting on: a fraction done (0-1), a message,
        and text that follows what earlier calls sent (a model's next tokens). Frames go at most
        every 0.1 s; text in between is gathered, and sent before the result."""
        if output:
            self._unsent += output
        if fraction is None and message is None and not self._unsent:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if fraction is None and message is None and now - self._last < PROGRESS_EVERY:
            if self._flush is None:
                self._flush = loop.call_at(self._last + PROGRESS_EVERY, self._flush_output)
            return
        self._frame(fraction, message)

    def _flush_output(self) -> None:
        self._flush = None
        if self._unsent:
            self._frame(None, None)

    def _frame(self, fraction: float | None, message: str | None) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        frame: dict[str, Any] = {"type": "progress", "task_id": self.task_id, "attempt": self.attempt}
        if fraction is not None:
            frame["fraction"] = fraction
        if message is not None:
            frame["message"] = message
        if self._unsent:
            frame["output"] = self._unsent
            self._unsent = ""
        self._last = asyncio.get_running_loop().time()
        if self._send:
            self._send(frame)


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


class Worker:
    """`hub` is the hub's URL (http or https); `token` an agent token (authentication on);
    `ssl` an `ssl.SSLContext` for a hub with its own certificate."""

    def __init__(self, hub: str = "http://127.0.0.1:7700", *, name: str | None = None, slots: int = 1,
                 token: str | None = None, ssl: Any = None, max_backoff: float = 10.0):
        self.url = hub.rstrip("/").replace("https://", "wss://").replace("http://", "ws://") + "/ws/agent"
        self.name = name or f"{socket.gethostname()}:python"
        self.slots = slots
        self.token = token
        self.ssl = ssl
        self.max_backoff = max_backoff
        self.handlers: dict[str, tuple[Handler, float]] = {}
        self.swarms: dict[str, MessageHandler] = {}
        #: Welcomed by the hub, now (set again after each reconnect).
        self.connected = False
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
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
        """Serves until interrupted (Ctrl-C drains, then exits)."""
        try:
            asyncio.run(self.serve())
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        """Drains: no more work is taken, what runs finishes and is reported, then `serve` ends.
        May be called from any thread."""
        if self._stopping is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def serve(self) -> None:
        """Connects, works, and reconnects with backoff until `stop()`."""
        if not self.handlers:
            raise ValueError("no handlers: register one with @worker.task(capability)")
        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._session()
                failures = 0
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
            if welcome.get("type") != "welcome":
                raise websockets.exceptions.InvalidMessage(f"expected welcome, got {welcome}")
            interval = welcome["heartbeat_interval_ms"] / 1000
            self._outbox = asyncio.Queue()
            for result in self._unsent:
                self._outbox.put_nowait(result)
            self._unsent.clear()
            self.connected = True
            assert self._stopping is not None
            writer = asyncio.create_task(self._write(ws, interval))
            drain = asyncio.create_task(self._drain_when_stopped())
            try:
                async for frame in ws:
                    if self._handle(json.loads(frame)):
                        break
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
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._send({"type": "close"})

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
            await ws.send(json.dumps(message))

    def _send(self, message: dict[str, Any]) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(message)
        elif message["type"] == "result":
            self._unsent.append(message)

    def _handle(self, message: dict[str, Any]) -> bool:
        """One frame from the hub; true when the session should end."""
        kind = message.get("type")
        if kind == "assign":
            for task in message["tasks"]:
                key = (task["task_id"], task["attempt"])
                self._running[key] = asyncio.create_task(self._work(task))
        elif kind == "cancel":
            running = self._running.pop((message["task_id"], message["attempt"]), None)
            if running:
                running.cancel()
        elif kind == "message":
            asyncio.create_task(self._reply(message))
        elif kind == "drain" and self._stopping is not None:
            # Drained by an operator: finish what runs, then stop.
            self._stopping.set()
        elif kind == "error":
            log.warning("the hub refused a frame: %s: %s", message.get("code"), message.get("message"))
        return False

    async def _work(self, task: dict[str, Any]) -> None:
        key = (task["task_id"], task["attempt"])
        job = Job(task["task_id"], task["attempt"], task["capability"], task.get("payload"),
                  task.get("priority", 5), task.get("timeout_ms", 30000), task.get("inputs") or {},
                  task.get("failed_inputs") or [], _send=self._send)
        result: dict[str, Any] = {"type": "result", "task_id": job.task_id, "attempt": job.attempt}
        try:
            handler, _ = self.handlers[job.capability]
            output = await _call(handler, job)
            result.update(ok=True, output=output)
        except asyncio.CancelledError:
            return  # cancelled by the hub: it ended the attempt already
        except Fail as e:
            result.update(ok=False, error=str(e), retry=e.retry)
        except Exception as e:  # a handler's failure is the attempt's, not the worker's
            result.update(ok=False, error=f"{type(e).__name__}: {e}", retry=True)
        finally:
            self._running.pop(key, None)
        if job._unsent:
            job._frame(None, None)  # the text gathered since the last frame, before the result
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
        self._send({"type": "reply", "message_id": message["message_id"], "output": output})
