"""The worker against a real hub: results, failures, progress, cancels, swarms, inputs,
reconnecting across a hub restart."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import hive_sdk
from conftest import until


class Running:
    """A worker serving on a thread of its own, stopped (drained) at the end."""

    def __init__(self, worker: hive_sdk.Worker):
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, daemon=True)

    def __enter__(self) -> hive_sdk.Worker:
        self.thread.start()
        until(lambda: self.worker.connected, "the worker to connect")
        return self.worker

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the worker drained and stopped"


def test_results_failures_and_inputs(hub):
    worker = hive_sdk.Worker(hub.url, name="py-test", slots=4)
    attempts = []

    @worker.task("double")
    def double(job):  # a plain function, on a thread
        return job.payload * 2

    @worker.task("sum")
    async def total(job):
        return sum(job.inputs.values())

    @worker.task("flaky")
    async def flaky(job):
        attempts.append(job.attempt)
        if job.attempt == 1:
            raise RuntimeError("first try fails")
        return "second try"

    @worker.task("refuse")
    async def refuse(job):
        raise hive_sdk.Fail("bad payload", retry=False)

    with Running(worker), hive_sdk.Client(hub.url) as client:
        a = client.submit("double", 2)
        b = client.submit("double", 5)
        c = client.submit("sum", depends_on=[a.id, b.id])
        done = client.wait(c.id, timeout=30)
        assert (done.status, done.result) == ("succeeded", 14)
        flaky_task = client.wait(client.submit("flaky", backoff_ms=10).id, timeout=30)
        assert (flaky_task.status, flaky_task.result, attempts) == ("succeeded", "second try", [1, 2])
        assert "RuntimeError: first try fails" in flaky_task.attempts[0].error
        refused = client.wait(client.submit("refuse").id, timeout=30)
        assert (refused.status, len(refused.attempts), refused.error) == ("failed", 1, "bad payload")
        [agent] = [a for a in client.agents() if a.name == "py-test"]
        # Page by page (the hub's built-in agent and this worker at least): the same list.
        every = [a.id for a in client.agents()]
        assert len(every) >= 2 and [a.id for a in client.agents(page_size=1)] == every
        assert set(agent.capabilities) == {"double", "sum", "flaky", "refuse"} and agent.slots == 4


def test_a_job_knows_when_its_lease_ends(hub):
    worker = hive_sdk.Worker(hub.url, name="py-lease")

    @worker.task("lease")
    async def lease(job):
        return [job.timeout_ms, job.deadline]

    with Running(worker), hive_sdk.Client(hub.url) as client:
        done = client.wait(client.submit("lease", timeout_ms=45_000).id, timeout=30)
        assert done.status == "succeeded", (done.error, done.attempts)
        timeout_ms, deadline = done.result
        assert timeout_ms == 45_000
        # The attempt's start as the hub recorded it (milliseconds), plus the lease.
        started = datetime.fromisoformat(done.attempts[-1].started_at.replace("Z", "+00:00"))
        assert round(deadline * 1000) == round(started.timestamp() * 1000) + 45_000


def test_progress_cancels_and_swarm_replies(hub):
    worker = hive_sdk.Worker(hub.url, name="py-long")
    started = threading.Event()
    stopped = threading.Event()

    @worker.task("long")
    async def long(job):
        job.progress(fraction=0.25, message="a quarter", output="Once ")
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    @worker.on_message("council")
    def vote(payload):
        return {"vote": payload["q"] == "agree?"}

    with Running(worker), hive_sdk.Client(hub.url) as client:
        task = client.submit("long")
        until(started.is_set, "the handler to start")
        progress = until(lambda: client.get(task.id).progress, "the progress on the task")
        assert (progress.attempt, progress.fraction, progress.message) == (1, 0.25, "a quarter")
        assert client.cancel(task.id).status == "cancelled"
        until(stopped.is_set, "the handler to be cancelled")
        outcome = client.broadcast("council", {"q": "agree?"}, timeout_ms=10000)
        assert [r.output for r in outcome.replies] == [{"vote": True}]
        assert outcome.recipients == 1 and outcome.missing == []


def test_the_worker_reconnects_after_a_hub_restart(hub):
    worker = hive_sdk.Worker(hub.url, name="py-stays", max_backoff=0.5)

    @worker.task("echo")
    def echo(job):
        return job.payload

    with Running(worker), hive_sdk.Client(hub.url) as client:
        assert client.wait(client.submit("echo", "before").id, timeout=30).result == "before"
        hub.kill()
        until(lambda: not worker.connected, "the worker to notice")
        hub.start()
        until(lambda: worker.connected, "the worker to reconnect")
        assert client.wait(client.submit("echo", "after").id, timeout=30).result == "after"


def test_a_running_task_survives_a_hub_restart(hub):
    worker = hive_sdk.Worker(hub.url, name="py-holds", max_backoff=0.5)
    release = threading.Event()

    @worker.task("hold")
    def hold(job):  # a plain function: it keeps running while the hub is away
        release.wait(60)
        return "held"

    with Running(worker), hive_sdk.Client(hub.url) as client:
        task = client.submit("hold")
        until(lambda: client.get(task.id).status == "running", "the task to start")
        hub.kill()
        until(lambda: not worker.connected, "the worker to notice")
        hub.start()
        until(lambda: worker.connected, "the worker to reconnect, naming the attempt it holds")
        release.set()
        done = client.wait(task.id, timeout=30)
        # Re-attached: the attempt it held counts, and nothing ran twice.
        assert (done.status, done.result, len(done.attempts)) == ("succeeded", "held", 1)


def test_progress_from_a_plain_handler_and_a_result_that_is_not_json(hub):
    worker = hive_sdk.Worker(hub.url, name="py-plain")
    release = threading.Event()

    @worker.task("plain")
    def plain(job):
        job.progress(fraction=0.5, message="from a thread")
        release.wait(60)
        return {"a", "set"}  # not JSON

    with Running(worker), hive_sdk.Client(hub.url) as client:
        task = client.submit("plain")
        progress = until(lambda: client.get(task.id).progress, "the progress")
        assert (progress.fraction, progress.message) == (0.5, "from a thread")
        release.set()
        done = client.wait(task.id, timeout=30)
        assert (done.status, len(done.attempts)) == ("failed", 1)
        assert "not JSON" in done.error


def test_stop_lets_the_running_task_finish(hub):
    worker = hive_sdk.Worker(hub.url, name="py-drains")
    release = threading.Event()

    @worker.task("slow")
    async def slow(job):
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 60)
        return "finished"

    runner = Running(worker)
    runner.__enter__()
    with hive_sdk.Client(hub.url) as client:
        task = client.submit("slow")
        until(lambda: client.get(task.id).status == "running", "the task to start")
        worker.stop()
        until(lambda: any(a.name == "py-drains" and a.state == "draining" for a in client.agents()), "the drain")
        release.set()
        runner.__exit__(None, None, None)
        done = client.wait(task.id, timeout=30)
        assert (done.status, done.result) == ("succeeded", "finished")


def test_a_worker_the_hub_refuses_stops_with_the_reason(secured_hub):
    worker = hive_sdk.Worker(secured_hub.url, name="py-no-token")

    @worker.task("x")
    def x(job):
        return None

    try:
        asyncio.run(worker.serve())
    except hive_sdk.Refused as refused:
        assert "401" in str(refused)
    else:
        raise AssertionError("serve() should raise Refused")


def test_a_task_assigned_while_stopping_is_released_unstarted():
    # The moment between the worker's drain and the hub reading it, set up by hand: the hub
    # cannot be made to assign in it on cue.
    worker = hive_sdk.Worker(name="py-stopping")

    @worker.task("job")
    def job(job):
        raise AssertionError("a released task must not run")

    async def assigned_while_stopping():
        worker._stopping = asyncio.Event()
        worker._stopping.set()
        worker._outbox = asyncio.Queue()
        worker._handle({"type": "assign", "tasks": [
            {"task_id": "t1", "attempt": 2, "capability": "job", "payload": None}]})
        return worker._outbox.get_nowait(), worker._outbox.empty(), dict(worker._running)

    sent, nothing_else, running = asyncio.run(assigned_while_stopping())
    assert sent == {"type": "release", "task_id": "t1", "attempt": 2}
    assert nothing_else and not running
