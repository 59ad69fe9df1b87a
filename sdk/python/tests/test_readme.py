"""The README's example, run as it is against a real hub."""

from __future__ import annotations

import os
import re
import subprocess
import sys

HERE = os.path.dirname(__file__)


def test_the_readme_example_runs(hub):
    readme = open(os.path.join(HERE, "..", "README.md")).read()
    [example] = re.findall(r"```python\n(.*?)```", readme, re.S)
    ran = subprocess.run([sys.executable, "-c", example], env={**os.environ, "HIVE_HUB": hub.url},
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "succeeded {'text': 'HELLO HIVE'}",
        "400 invalid_field capability",
    ]
