"""Side by side with AWS's runtime client: run its own loop on the same handler files
and events (see _awslambdaric_run.py), and read back what it posted and logged."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_DRIVER = Path(__file__).with_name("_awslambdaric_run.py")
EXECUTION_ENV = f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}"


@dataclass
class Posted:
    """One thing the runtime posted to the Runtime API."""

    kind: str  # "result", "error" or "init_error"
    request_id: str | None
    body: Any  # a result as the Invoke API's caller decodes it; an error's JSON decoded
    raw: bytes | str = b""  # the bytes (a result) or the JSON text (an error) as posted
    content_type: str | None = None


@dataclass
class RuntimeRun:
    posted: list[Posted] = field(default_factory=list)
    stdout: str = ""
    returncode: int = 0
    stderr: str = ""  # the driver's own failures show here, not in the log events

    @property
    def log_events(self) -> list[str]:
        """The log sink's output as Lambda frames it: an error report's lines were
        joined with carriage returns, everything else is split at newlines."""
        return [line for line in self.stdout.split("\n") if line]


def run_awslambdaric(
    root: Path,
    handler: str,
    events: list[dict[str, Any]],
    env: dict[str, str] | None = None,
) -> RuntimeRun:
    """awslambdaric 4.2.2 serving ``events`` (each: ``body`` JSON text, ``request_id``,
    and optionally ``client_context``, ``identity``, ``tenant_id`` header values)."""
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "_HANDLER": handler,
        "AWS_EXECUTION_ENV": EXECUTION_ENV,
        "AWS_LAMBDA_FUNCTION_NAME": "test-function",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/test-function",
        "AWS_LAMBDA_LOG_STREAM_NAME": "stream",
        "LAMBDA_TASK_ROOT": str(root),
        "TZ": ":UTC",
        **(env or {}),
    }
    with tempfile.TemporaryDirectory() as folder:
        spec_path = Path(folder) / "spec.json"
        out_path = Path(folder) / "out.jsonl"
        spec_path.write_text(
            json.dumps(
                {"handler": handler, "code_root": str(root), "env": environ, "events": events}
            )
        )
        done = subprocess.run(
            [sys.executable, str(_DRIVER), str(spec_path), str(out_path)],
            capture_output=True,
            timeout=60,
        )
        lines = out_path.read_text().splitlines() if out_path.exists() else []
    run = RuntimeRun(
        stdout=done.stdout.decode("utf-8", "replace"),
        returncode=done.returncode,
        stderr=done.stderr.decode("utf-8", "replace"),
    )
    if done.returncode and not lines:  # shown with a failing test's captured output
        sys.stderr.write(f"awslambdaric's driver exited {done.returncode}:\n{run.stderr}")
    for line in lines:
        item = json.loads(line)
        if item["kind"] == "result":
            data = base64.b64decode(item["body"])
            body: Any = data
            if item["content_type"] == "application/json":
                body = json.loads(data)
            run.posted.append(
                Posted("result", item["request_id"], body, data, item["content_type"])
            )
        else:
            run.posted.append(
                Posted(item["kind"], item.get("request_id"), json.loads(item["body"]), item["body"])
            )
    return run
