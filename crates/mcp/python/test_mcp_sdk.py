"""Hive's MCP server tested with the official Python SDK (`mcp` from PyPI) as the client, over
both transports: streamable HTTP at the hub's /mcp and stdio through `hive mcp`. A real hub with
authentication on and a real worker (`hive worker --exec cat`, which echoes a task's payload as
its result and replies to broadcasts with the message's payload).

Run by .ci/python: HIVE_BIN names the hub binary.
"""

import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

HIVE = os.environ.get("HIVE_BIN", "target/debug/hive")
TOOLS = {
    "submit_task",
    "get_task",
    "wait_task",
    "list_tasks",
    "cancel_task",
    "list_agents",
    "hub_status",
    "broadcast",
}


def rest(url, method, path, token, body=None):
    data = None if body is None and method == "GET" else json.dumps(body or {}).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def until(condition, what, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def hive():
    work = tempfile.mkdtemp(prefix="hive-mcp-")
    log = open(os.path.join(work, "hub.log"), "w+")
    hub = subprocess.Popen(
        [HIVE, "serve", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "data"), "--auth"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    processes = [hub]
    try:

        def listening():
            log.seek(0)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read())
            return found and found.group(1)

        url = until(listening, "the hub to listen")
        admin = open(os.path.join(work, "data", "admin.token")).read().strip()
        tokens = {
            role: rest(url, "POST", "/api/v1/tokens", admin, {"name": f"mcp-{role}", "role": role})["token"]
            for role in ("client", "read", "agent")
        }
        worker = subprocess.Popen(
            [HIVE, "worker", "--hub", url, "--capability", "echo", "--group", "team",
             "--name", "mcp-echo", "--exec", "cat"],
            env={**os.environ, "HIVE_TOKEN": tokens["agent"]},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(worker)
        until(
            lambda: any(a["name"] == "mcp-echo" for a in rest(url, "GET", "/api/v1/agents", admin)["items"]),
            "the worker to connect",
        )
        yield {"url": url, "tokens": tokens}
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=20)
        log.close()


@asynccontextmanager
async def over_http(hive, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(hive["url"] + "/mcp", http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                yield session


@asynccontextmanager
async def over_stdio(hive, token):
    server = StdioServerParameters(
        command=HIVE,
        args=["mcp", "--hub", hive["url"]],
        env={**os.environ, "HIVE_TOKEN": token},
    )
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            yield session


TRANSPORTS = {"http": over_http, "stdio": over_stdio}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_tool_over(transport, hive):
    async with TRANSPORTS[transport](hive, hive["tokens"]["client"]) as session:
        initialized = await session.initialize()
        assert initialized.server_info.name == "hive"
        assert initialized.capabilities.tools is not None

        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and tool.input_schema["type"] == "object", tool.name
        assert tools["submit_task"].input_schema["required"] == ["capability"]
        assert tools["get_task"].annotations.read_only_hint is True
        assert tools["cancel_task"].annotations.destructive_hint is True

        # A task through MCP runs on the real worker and its result comes back.
        payload = {"question": f"over {transport}", "n": 42}
        done = await session.call_tool(
            "submit_task", {"capability": "echo", "payload": payload, "wait_ms": 20000}
        )
        assert not done.is_error, done.content
        task = done.structured_content
        assert task["status"] == "succeeded", task
        assert task["result"] == payload
        task_id = task["id"]

        got = await session.call_tool("get_task", {"id": task_id})
        assert got.structured_content["result"] == payload
        waited = await session.call_tool("wait_task", {"id": task_id, "timeout_ms": 1000})
        assert waited.structured_content["status"] == "succeeded"

        listed = await session.call_tool("list_tasks", {"capability": "echo", "status": "succeeded"})
        assert task_id in [t["id"] for t in listed.structured_content["items"]]

        # Nobody has this capability: the task stays queued until cancelled.
        queued = await session.call_tool("submit_task", {"capability": f"nobody-{transport}"})
        assert queued.structured_content["status"] == "queued"
        cancelled = await session.call_tool("cancel_task", {"id": queued.structured_content["id"]})
        assert cancelled.structured_content["status"] == "cancelled"

        agents = (await session.call_tool("list_agents", {})).structured_content["items"]
        echo = next(a for a in agents if a["name"] == "mcp-echo")
        assert "echo" in echo["capabilities"]

        status = (await session.call_tool("hub_status", {})).structured_content
        assert status["tasks"]["succeeded"] >= 1

        replies = await session.call_tool(
            "broadcast", {"group": "team", "payload": {"ping": transport}, "timeout_ms": 10000}
        )
        assert not replies.is_error, replies.content
        assert [r["output"] for r in replies.structured_content["replies"]] == [{"ping": transport}]

        # What the hub refuses comes back as a tool error with the API's code and message.
        missing = await session.call_tool("get_task", {"id": "00000000-0000-7000-8000-000000000000"})
        assert missing.is_error
        assert missing.structured_content["status"] == 404
        assert missing.structured_content["error"]["code"] == "not_found"
        bad = await session.call_tool("submit_task", {"capability": "no spaces allowed"})
        assert bad.is_error and bad.structured_content["error"]["field"] == "capability"
        assert "capability" in bad.content[0].text

        # Arguments the tool cannot take are a protocol error naming them.
        with pytest.raises(MCPError, match="colour"):
            await session.call_tool("submit_task", {"capability": "echo", "colour": "red"})
        with pytest.raises(MCPError, match="no tool"):
            await session.call_tool("launch_rockets", {})


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_read_token_may_read_but_not_submit(transport, hive):
    async with TRANSPORTS[transport](hive, hive["tokens"]["read"]) as session:
        await session.initialize()
        status = await session.call_tool("hub_status", {})
        assert not status.is_error
        refused = await session.call_tool("submit_task", {"capability": "echo"})
        assert refused.is_error
        assert refused.structured_content["status"] == 403
        assert refused.structured_content["error"]["code"] == "forbidden_role"


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


@pytest.mark.parametrize(
    "role, status, code", [(None, 401, "unauthorized"), ("agent", 403, "forbidden_role")]
)
def test_http_needs_a_token_that_may_read(hive, role, status, code):
    headers = {"Accept": "application/json, text/event-stream"}
    if role:
        headers["Authorization"] = f"Bearer {hive['tokens'][role]}"
    answer = httpx2.post(hive["url"] + "/mcp", json=INITIALIZE, headers=headers, timeout=10)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
