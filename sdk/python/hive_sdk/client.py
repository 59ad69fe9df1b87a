"""Clients of the REST API: `Client` (blocking) and `AsyncClient` (asyncio), with the same
methods. Each call is described once (`_Call`); the two only differ in how they send it. A
`429` or `503` with `Retry-After` (the hub accepted nothing) is repeated as it asks, for up to
`busy_budget` seconds in all, then raised."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, TypeVar

import httpx

from .errors import ApiError, Unreachable
from .models import Agent, BroadcastOutcome, Status, Task, TaskPage

T = TypeVar("T")

#: One long-poll's share of a longer wait, in seconds (under the hub's default `max_wait`; a
#: hub that waits less says so, and the client then asks for what it allows).
WAIT_CHUNK = 30.0


def _max_wait(error: ApiError) -> float | None:
    """The hub's `max_wait` in seconds, from its refusal of a longer `timeout_ms`."""
    found = re.search(r"from 0 to (\d+)", error.message) if error.field == "timeout_ms" else None
    return int(found.group(1)) / 1000 if found else None


@dataclass
class _Call(Generic[T]):
    method: str
    path: str
    decode: Callable[[Any], T]
    body: Any = None
    params: dict[str, Any] | None = None
    timeout: float | None = None


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _new_task(capability: str, payload: Any, options: dict[str, Any]) -> dict[str, Any]:
    task = {"capability": capability, "payload": payload}
    task.update({k: v for k, v in options.items() if v is not None})
    return task


def _submit(capability: str, payload: Any, options: dict[str, Any]) -> _Call[Task]:
    return _Call("POST", "/api/v1/tasks", Task.from_json, _new_task(capability, payload, options))


def _batch(tasks: Iterable[dict[str, Any]]) -> _Call[list[str]]:
    return _Call("POST", "/api/v1/tasks/batch", lambda j: list(j["ids"]), {"tasks": list(tasks)})


def _get(id: str) -> _Call[Task]:
    return _Call("GET", f"/api/v1/tasks/{_quote(id)}", Task.from_json)


def _wait(id: str, seconds: float) -> _Call[Task]:
    ms = int(max(0.0, seconds) * 1000)
    return _Call("GET", f"/api/v1/tasks/{_quote(id)}/wait", Task.from_json,
                 params={"timeout_ms": ms}, timeout=seconds + 10)


def _list(status: str | None, capability: str | None, limit: int | None, cursor: str | None) -> _Call[TaskPage]:
    params = {"status": status, "capability": capability, "limit": limit, "cursor": cursor}
    return _Call("GET", "/api/v1/tasks", TaskPage.from_json, params={k: v for k, v in params.items() if v is not None})


def _cancel(id: str) -> _Call[Task]:
    return _Call("POST", f"/api/v1/tasks/{_quote(id)}/cancel", Task.from_json, {})


def _agents(page_size: int, cursor: str | None) -> _Call[tuple[list[Agent], str | None]]:
    params: dict[str, Any] = {"limit": page_size}
    if cursor is not None:
        params["cursor"] = cursor
    return _Call("GET", "/api/v1/agents", _agent_page, params=params)


def _agent_page(body: Any) -> tuple[list[Agent], str | None]:
    """One page of agents and the cursor of the next (None on the last)."""
    return [Agent.from_json(a) for a in body["items"]], body.get("next_cursor")


def _status() -> _Call[Status]:
    return _Call("GET", "/api/v1/status", Status.from_json)


def _broadcast(group: str, payload: Any, timeout_ms: int | None) -> _Call[BroadcastOutcome]:
    body: dict[str, Any] = {"payload": payload}
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    return _Call("POST", f"/api/v1/swarms/{_quote(group)}/messages", BroadcastOutcome.from_json, body,
                 timeout=(timeout_ms or 5000) / 1000 + 10)


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code not in (429, 503):
        return None
    try:
        return max(0.1, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _answer(call: _Call[T], response: httpx.Response) -> T:
    try:
        body = response.json()
    except ValueError:
        if response.is_success:
            raise Unreachable(f"{call.method} {call.path}: the hub answered {response.status_code} without JSON") from None
        # Not the hub's own error body (a proxy's, say): still the answer's status and text.
        raise ApiError(response.status_code, "error", response.text[:500]) from None
    if response.is_success:
        return call.decode(body)
    error = body.get("error", {}) if isinstance(body, dict) else {}
    raise ApiError(response.status_code, error.get("code", "error"), error.get("message", str(body)), error.get("field"))


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class Client:
    """The REST API, blocking. `hub` is the hub's URL; `token` an API token (authentication on);
    `verify` an `ssl.SSLContext` or CA file for an https hub with its own certificate."""

    def __init__(self, hub: str = "http://127.0.0.1:7700", *, token: str | None = None,
                 busy_budget: float = 30.0, timeout: float = 30.0, verify: Any = True):
        self._http = httpx.Client(base_url=hub.rstrip("/"), headers=_headers(token), timeout=timeout, verify=verify)
        self.busy_budget = busy_budget

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: _Call[T]) -> T:
        waited = 0.0
        while True:
            try:
                response = self._http.request(call.method, call.path, json=call.body, params=call.params,
                                              timeout=call.timeout or httpx.USE_CLIENT_DEFAULT)
            except httpx.HTTPError as e:
                raise Unreachable(f"cannot reach the hub: {e}") from e
            wait = _retry_after(response)
            if wait is None or waited + wait > self.busy_budget:
                return _answer(call, response)
            time.sleep(wait)
            waited += wait

    def submit(self, capability: str, payload: Any = None, **options: Any) -> Task:
        """Submits a task; `options` are the API's fields (priority, max_attempts, timeout_ms,
        backoff_ms, idempotency_key, depends_on, on_parent_failure, replicas, quorum, vote)."""
        return self._run(_submit(capability, payload, options))

    def submit_batch(self, tasks: Iterable[dict[str, Any]]) -> list[str]:
        """Submits tasks (dicts as `POST /tasks` takes them) in one transaction; their ids."""
        return self._run(_batch(tasks))

    def get(self, id: str) -> Task:
        return self._run(_get(id))

    def wait(self, id: str, timeout: float = 30.0) -> Task:
        """Waits up to `timeout` seconds for the task to finish; the task as it then stands."""
        deadline, chunk = time.monotonic() + timeout, WAIT_CHUNK
        while True:
            left = deadline - time.monotonic()
            try:
                task = self._run(_wait(id, min(max(left, 0.0), chunk)))
            except ApiError as e:
                if (allowed := _max_wait(e)) is None or allowed >= chunk:
                    raise
                chunk = allowed
                continue
            if task.finished or left <= chunk:
                return task

    def list_tasks(self, status: str | None = None, capability: str | None = None,
                   limit: int | None = None, cursor: str | None = None) -> TaskPage:
        return self._run(_list(status, capability, limit, cursor))

    def cancel(self, id: str) -> Task:
        return self._run(_cancel(id))

    def agents(self, page_size: int = 1000) -> list[Agent]:
        """Every agent the hub knows, by id, asked for `page_size` (1-1000) at a time."""
        agents: list[Agent] = []
        cursor = None
        while True:
            page, cursor = self._run(_agents(page_size, cursor))
            agents += page
            if cursor is None:
                return agents

    def status(self) -> Status:
        return self._run(_status())

    def broadcast(self, group: str, payload: Any = None, timeout_ms: int | None = None) -> BroadcastOutcome:
        return self._run(_broadcast(group, payload, timeout_ms))


class AsyncClient:
    """The REST API for asyncio: the same methods as `Client`, awaited."""

    def __init__(self, hub: str = "http://127.0.0.1:7700", *, token: str | None = None,
                 busy_budget: float = 30.0, timeout: float = 30.0, verify: Any = True):
        self._http = httpx.AsyncClient(base_url=hub.rstrip("/"), headers=_headers(token), timeout=timeout, verify=verify)
        self.busy_budget = busy_budget

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _run(self, call: _Call[T]) -> T:
        waited = 0.0
        while True:
            try:
                response = await self._http.request(call.method, call.path, json=call.body, params=call.params,
                                                    timeout=call.timeout or httpx.USE_CLIENT_DEFAULT)
            except httpx.HTTPError as e:
                raise Unreachable(f"cannot reach the hub: {e}") from e
            wait = _retry_after(response)
            if wait is None or waited + wait > self.busy_budget:
                return _answer(call, response)
            await asyncio.sleep(wait)
            waited += wait

    async def submit(self, capability: str, payload: Any = None, **options: Any) -> Task:
        return await self._run(_submit(capability, payload, options))

    async def submit_batch(self, tasks: Iterable[dict[str, Any]]) -> list[str]:
        return await self._run(_batch(tasks))

    async def get(self, id: str) -> Task:
        return await self._run(_get(id))

    async def wait(self, id: str, timeout: float = 30.0) -> Task:
        deadline, chunk = time.monotonic() + timeout, WAIT_CHUNK
        while True:
            left = deadline - time.monotonic()
            try:
                task = await self._run(_wait(id, min(max(left, 0.0), chunk)))
            except ApiError as e:
                if (allowed := _max_wait(e)) is None or allowed >= chunk:
                    raise
                chunk = allowed
                continue
            if task.finished or left <= chunk:
                return task

    async def list_tasks(self, status: str | None = None, capability: str | None = None,
                         limit: int | None = None, cursor: str | None = None) -> TaskPage:
        return await self._run(_list(status, capability, limit, cursor))

    async def cancel(self, id: str) -> Task:
        return await self._run(_cancel(id))

    async def agents(self, page_size: int = 1000) -> list[Agent]:
        """Every agent the hub knows, by id, asked for `page_size` (1-1000) at a time."""
        agents: list[Agent] = []
        cursor = None
        while True:
            page, cursor = await self._run(_agents(page_size, cursor))
            agents += page
            if cursor is None:
                return agents

    async def status(self) -> Status:
        return await self._run(_status())

    async def broadcast(self, group: str, payload: Any = None, timeout_ms: int | None = None) -> BroadcastOutcome:
        return await self._run(_broadcast(group, payload, timeout_ms))
