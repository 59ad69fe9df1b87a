"""docs/protocol.md's complete Python worker, run as it is (only its hub address changed)
against a real hub: it runs tasks, fails a `null` payload for good instead of crashing, and
stops when drained."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx

import hive_sdk
from conftest import until

HERE = os.path.dirname(__file__)
DOC = os.path.join(HERE, "..", "..", "..", "docs", "protocol.md")


def the_worker() -> str:
    text = open(DOC).read()
    section = text.split("## A complete worker in Python", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)[:1]
    assert "ws://127.0.0.1:7700/ws/agent" in code
    return code


def test_the_protocol_docs_python_worker_runs(hub):
    code = the_worker().replace("ws://127.0.0.1:7700", hub.url.replace("http://", "ws://"))
    env = {key: value for key, value in os.environ.items() if key != "HIVE_TOKEN"}
    worker = subprocess.Popen([sys.executable, "-c", code], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with hive_sdk.Client(hub.url) as client:
            py = until(lambda: next((a for a in client.agents() if a.name == "py"), None),
                       "the worker to connect")
            done = client.wait(client.submit("upper", {"text": "hive"}).id, timeout=20)
            assert (done.status, done.result) == ("succeeded", {"text": "HIVE"})
            refused = client.wait(client.submit("upper", None).id, timeout=20)
            assert refused.status == "failed" and "needs a payload" in refused.error
            # Drained, the worker returns from its loop and exits.
            httpx.post(f"{hub.url}/api/v1/agents/{py.id}/drain", json={}).raise_for_status()
            _, stderr = worker.communicate(timeout=20)
            assert worker.returncode == 0, stderr
    finally:
        worker.kill()
