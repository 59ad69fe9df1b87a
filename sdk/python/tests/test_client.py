"""The clients against a real hub: every call, typed answers, the API's errors."""

from __future__ import annotations

import asyncio

import pytest

import hive_sdk
from conftest import admin_token, free_port


def test_every_call_of_the_blocking_client(hub):
    with hive_sdk.Client(hub.url) as client:
        task = client.submit("nobody", {"n": 1}, priority=9, idempotency_key="k-1")
        assert isinstance(task, hive_sdk.Task)
        assert (task.status, task.priority, task.payload) == ("queued", 9, {"n": 1})
        assert client.submit("nobody", {"n": 1}, idempotency_key="k-1").id == task.id
        assert client.get(task.id).capability == "nobody"
        waited = client.wait(task.id, timeout=0.2)
        assert waited.status == "queued" and not waited.finished
        ids = client.submit_batch([{"capability": "nobody"}, {"capability": "nobody", "priority": 1}])
        assert len(ids) == 2
        page = client.list_tasks(capability="nobody", limit=2)
        assert len(page.items) == 2 and page.next_cursor
        rest = client.list_tasks(capability="nobody", cursor=page.next_cursor)
        assert {t.id for t in page.items + rest.items} == {task.id, *ids}
        assert client.cancel(task.id).status == "cancelled"
        status = client.status()
        assert status.tasks["cancelled"] == 1 and status.queue_depth["nobody"] == 2
        assert [a.name for a in client.agents()] == ["builtin"]


def test_the_apis_errors_carry_code_message_and_field(hub):
    with hive_sdk.Client(hub.url) as client:
        with pytest.raises(hive_sdk.ApiError) as bad:
            client.submit("no spaces", priority=12)
        assert bad.value.status == 400 and bad.value.code == "invalid_field"
        assert bad.value.field in ("capability", "priority")
        with pytest.raises(hive_sdk.ApiError) as missing:
            client.get("00000000-0000-7000-8000-000000000000")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        done = client.submit("nobody")
        client.cancel(done.id)
        with pytest.raises(hive_sdk.ApiError) as conflict:
            client.cancel(done.id)
        assert conflict.value.status == 409
    with pytest.raises(hive_sdk.Unreachable):
        hive_sdk.Client(f"http://127.0.0.1:{free_port()}").status()


def test_tokens_and_the_async_client(secured_hub):
    async def main():
        async with hive_sdk.AsyncClient(secured_hub.url) as anonymous:
            with pytest.raises(hive_sdk.ApiError) as refused:
                await anonymous.status()
            assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        async with hive_sdk.AsyncClient(secured_hub.url, token=admin_token(secured_hub)) as client:
            task = await client.submit("nobody", [1, 2])
            assert (await client.get(task.id)).payload == [1, 2]
            assert (await client.wait(task.id, timeout=0.1)).status == "queued"
            assert [t.id for t in (await client.list_tasks(status="queued")).items] == [task.id]
            assert (await client.status()).tasks["queued"] == 1
            assert await client.agents() != []
            assert (await client.cancel(task.id)).submitted_by is not None

    asyncio.run(main())


def test_wait_follows_a_hub_that_waits_less_than_its_chunk(tmp_path):
    from conftest import Hub

    config = tmp_path / "hive.toml"
    config.write_text("[server]\nmax_wait_ms = 500\n")
    port = free_port()
    short = Hub(f"http://127.0.0.1:{port}", str(tmp_path / "data"), port)
    short.start("--config", str(config))
    try:
        with hive_sdk.Client(short.url) as client:
            task = client.submit("nobody")
            # 1.2 s of waiting in the 0.5 s the hub allows per call.
            assert client.wait(task.id, timeout=1.2).status == "queued"
            with pytest.raises(hive_sdk.ApiError) as refused:
                client._run(hive_sdk.client._wait(task.id, 2.0))
            assert refused.value.field == "timeout_ms"
    finally:
        short.stop()
