"""The API's JSON as typed objects. Each has `from_json`; fields the hub adds later are kept in
`extra`, so an older SDK still reads a newer hub."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

FINISHED = ("succeeded", "failed", "cancelled")


def _build(cls: type[T], data: dict[str, Any], **nested: Any) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = {k: v for k, v in data.items() if k in names and k != "extra"}
    known.update(nested)
    extra = {k: v for k, v in data.items() if k not in names}
    return cls(**known, extra=extra)  # type: ignore[call-arg]


@dataclass
class Attempt:
    attempt: int
    started_at: str
    agent_id: str | None = None
    ended_at: str | None = None
    #: succeeded, failed, lease_expired, cancelled; None while it runs.
    outcome: str | None = None
    error: str | None = None
    output: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return _build(cls, data)


@dataclass
class Progress:
    """What a running attempt last reported."""

    attempt: int
    at: str
    fraction: float | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        return _build(cls, data)


@dataclass
class Task:
    id: str
    #: waiting, queued, running, succeeded, failed, cancelled.
    status: str
    capability: str
    payload: Any = None
    priority: int = 5
    max_attempts: int = 3
    timeout_ms: int = 30000
    attempts: list[Attempt] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    created_at: str = ""
    updated_at: str = ""
    submitted_by: str | None = None
    depends_on: list[str] = field(default_factory=list)
    progress: Progress | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        progress = data.get("progress")
        return _build(
            cls,
            data,
            attempts=[Attempt.from_json(a) for a in data.get("attempts", [])],
            progress=Progress.from_json(progress) if progress else None,
        )


@dataclass
class TaskPage:
    items: list[Task]
    #: Pass to `list_tasks(cursor=...)` for the next page; None on the last.
    next_cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskPage:
        return _build(cls, data, items=[Task.from_json(t) for t in data.get("items", [])])


@dataclass
class Agent:
    id: str
    name: str
    #: idle, busy, draining, offline.
    state: str
    #: Capability -> level (0.0-1.0).
    capabilities: dict[str, float]
    slots: int
    running: int
    connected_at: str = ""
    last_heartbeat: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Agent:
        return _build(cls, data)


@dataclass
class Status:
    tasks: dict[str, int]
    agents: dict[str, int]
    queue_depth: dict[str, int]
    routing_policy: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        return _build(cls, data)


@dataclass
class SwarmReply:
    agent_id: str
    output: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SwarmReply:
        return _build(cls, data)


@dataclass
class BroadcastOutcome:
    message_id: str
    group: str
    recipients: int
    replies: list[SwarmReply]
    #: Recipients that did not reply in time.
    missing: list[str] = field(default_factory=list)
    unreported_hubs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BroadcastOutcome:
        return _build(cls, data, replies=[SwarmReply.from_json(r) for r in data.get("replies", [])])
