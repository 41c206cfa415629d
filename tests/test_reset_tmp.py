"""After a timeout or a crash Lambda resets the environment: a new runtime, the same
/tmp. The function's next environment takes the reset one's /tmp on, in both
isolations; any other new environment starts with an empty one."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import FunctionMaker, function_maker

from pytest_lambda_context import InvocationTimeout, RuntimeExitError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLER = """
import os
import sys
import tempfile
import time

CACHE = os.path.join(tempfile.gettempdir(), "cache.txt")

def handler(event, context):
    if "write" in event:
        with open(CACHE, "w") as file:
            file.write(event["write"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit"):
        sys.exit(3)
    if os.path.exists(CACHE):
        with open(CACHE) as file:
            return file.read()
    return None
"""


@pytest.fixture
def make(project: Callable[[dict[str, str]], Path]) -> Iterator[FunctionMaker]:
    code = project({"app.py": HANDLER})
    with function_maker("app.handler", code_root=code, timeout=0.5) as maker:
        yield maker


@pytest.mark.parametrize("isolation", ["module", "process"])
@pytest.mark.parametrize("end", ["timeout", "exit"])
def test_a_reset_environment_keeps_its_tmp(make: FunctionMaker, isolation: str, end: str) -> None:
    function = make(isolation=isolation)
    assert function.invoke({"write": "kept"}) == "kept"
    with pytest.raises(InvocationTimeout if end == "timeout" else RuntimeExitError):
        function.invoke({"sleep": 5} if end == "timeout" else {"exit": True})
    assert function.invoke({}) == "kept"  # a new runtime (an init again), the same /tmp
    assert function.invocations[-1].cold
    assert function.cold_start().invoke({}) is None  # a new environment: an empty /tmp
