"""A real hub for the tests: `hive serve` (HIVE_BIN) on a free loopback port and a temporary
data directory, stopped after."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest

HIVE = os.environ.get("HIVE_BIN", os.path.join(os.path.dirname(__file__), "../../../target/debug/hive"))


def until(condition, what: str, seconds: float = 20.0):
    """Polls `condition` until it is truthy; a bound against hanging, not a timing check."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Hub:
    url: str
    data: str
    port: int
    process: subprocess.Popen | None = None

    def start(self, *more: str) -> None:
        self.process = subprocess.Popen(
            [HIVE, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data, *more],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HIVE_LOG": "warn"},
        )

        def ready():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        until(ready, "the hub to listen")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def kill(self) -> None:
        if self.process:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def hub():
    port = free_port()
    hub = Hub(f"http://127.0.0.1:{port}", tempfile.mkdtemp(prefix="hive-sdk-"), port)
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def secured_hub():
    port = free_port()
    hub = Hub(f"http://127.0.0.1:{port}", tempfile.mkdtemp(prefix="hive-sdk-"), port)
    hub.start("--auth")
    until(lambda: os.path.exists(os.path.join(hub.data, "admin.token")), "the admin token")
    yield hub
    hub.stop()


def admin_token(hub: Hub) -> str:
    return open(os.path.join(hub.data, "admin.token")).read().strip()


def match(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None
