"""Run AWS's runtime client (awslambdaric, a dev dependency) as Lambda runs it, for
side-by-side tests: ``python _awslambdaric_run.py SPEC OUT``.

Its own ``bootstrap.run`` loop serves the events named in SPEC (a JSON file: handler,
code_root, env, events) through its own ``LambdaRuntimeClient``; only the transport
under it (the C ``runtime_client`` module and the init-error HTTP call) is replaced by
one that records what the client posted, one JSON line each in OUT. What the runtime
wrote (its log sink is standard output, as with no telemetry descriptor) is this
process's stdout, and its exit status is the runtime's.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
from typing import Any


class _Done(BaseException):
    """No more events: leave the runtime loop."""


def main() -> int:
    with open(sys.argv[1]) as file:
        spec = json.load(file)
    out = open(sys.argv[2], "a")  # noqa: SIM115 - kept open while the runtime runs

    def record(**fields: Any) -> None:
        out.write(json.dumps(fields) + "\n")
        out.flush()

    os.environ.clear()
    os.environ.update(spec["env"])
    sys.path.insert(0, spec["code_root"])
    os.chdir(spec["code_root"])
    # Imported after the environment is set: the runtime reads its log settings at import.
    from awslambdaric import bootstrap, lambda_runtime_client

    events = list(spec["events"])

    class Transport:
        """What the C extension does, talking to the Runtime API."""

        @staticmethod
        def next() -> tuple[bytes, dict[str, str]]:
            if not events:
                raise _Done
            event = events.pop(0)
            headers = {
                "Lambda-Runtime-Aws-Request-Id": event["request_id"],
                "Lambda-Runtime-Deadline-Ms": event.get("deadline_ms", 2**42),
                "Lambda-Runtime-Invoked-Function-Arn": event.get("arn", "arn"),
                "Content-Type": "application/json",
            }
            for key, header in (
                ("client_context", "Lambda-Runtime-Client-Context"),
                ("identity", "Lambda-Runtime-Cognito-Identity"),
                ("tenant_id", "Lambda-Runtime-Aws-Tenant-Id"),
                ("trace_id", "Lambda-Runtime-Trace-Id"),
            ):
                if event.get(key) is not None:
                    headers[header] = event[key]
            return event["body"].encode(), headers

        @staticmethod
        def post_invocation_result(
            invoke_id: str, data: bytes, content_type: str, invocation_id: Any
        ) -> None:
            record(
                kind="result",
                request_id=invoke_id,
                content_type=content_type,
                body=base64.b64encode(data).decode(),
            )

        @staticmethod
        def post_error(invoke_id: str, error: str, xray: str, invocation_id: Any) -> None:
            record(kind="error", request_id=invoke_id, body=error)

    class Client(lambda_runtime_client.LambdaRuntimeClient):
        def call_rapid(  # type: ignore[override]
            self,
            http_method: str,
            endpoint: str,
            expected_http_code: int,
            payload: Any = None,
            headers: Any = None,
        ) -> None:
            from awslambdaric.lambda_runtime_marshaller import to_json

            record(kind="init_error", endpoint=endpoint, body=to_json(payload), headers=headers)

    lambda_runtime_client.runtime_client = Transport
    with contextlib.suppress(_Done):
        bootstrap.run(spec["handler"], Client("127.0.0.1:9001"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
