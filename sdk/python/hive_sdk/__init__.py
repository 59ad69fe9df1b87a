"""Hive's Python SDK: `Client` and `AsyncClient` for the REST API, `Worker` for the worker
protocol, the API's types (`Task`, `Agent`, ...) and errors (`ApiError` with the API's code,
message and field)."""

from .client import AsyncClient, Client
from .errors import ApiError, HiveError, Unreachable
from .models import Agent, Attempt, BroadcastOutcome, Progress, Status, SwarmReply, Task, TaskPage
from .worker import Fail, Job, Refused, Worker

__all__ = [
    "Agent", "ApiError", "AsyncClient", "Attempt", "BroadcastOutcome", "Client", "Fail", "HiveError",
    "Job", "Progress", "Refused", "Status", "SwarmReply", "Task", "TaskPage", "Unreachable", "Worker",
]
