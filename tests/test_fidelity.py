"""Side by side with AWS's runtime client (awslambdaric 4.2.2, a dev dependency): each
case runs through awslambdaric's own functions and through the plugin, in both
isolations, and the two must agree. See docs/fidelity.md."""

from __future__ import annotations

import importlib
import json
import logging
import re
import signal
import sys
import types
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _awslambdaric import run_awslambdaric
from support import FunctionMaker, function_maker, lambda_function

from pytest_lambda_context import (
    HandlerError,
    InitError,
    InvocationTimeout,
    LambdaError,
    LambdaFunction,
    MarshalError,
    RequestTooLargeError,
    ResponseTooLargeError,
    TooManyRequestsError,
)

awslambdaric = pytest.importorskip("awslambdaric", reason="awslambdaric is a dev dependency")
from awslambdaric import bootstrap  # noqa: E402
from awslambdaric.lambda_runtime_exception import FaultException  # noqa: E402
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller  # noqa: E402

ISOLATIONS = ["module", "process"]

# Handlers that return what the event names, so one function serves every case.
RESULTS = """
import collections, decimal, math
Point = collections.namedtuple("Point", "x y")
VALUES = {
    "decimal": decimal.Decimal("1.10"),
    "decimal_nan": decimal.Decimal("NaN"),
    "namedtuple": Point(1, 2),
    "bytes": b"\\x00raw",
    "nan": math.nan,
    "nested": {"a": [1, 2.5, None, True], "b": {"c": "é"}},
    "tuple": (1, "two"),
    "int_keys": {1: "one"},
    "set": {1, 2},
    "tuple_key": {(1, 2): 3},
    "object": object(),
}
def handler(event, context):
    return VALUES[event["case"]]
"""
LOGS = """
import logging, sys
logging.basicConfig(level=logging.INFO)  # a no-op on Lambda: the root has a handler
log = logging.getLogger("app")
print("init print")
def handler(event, context):
    print("line one")
    print("partial", end="")
    print(" line")
    sys.stderr.write("to stderr\\n")
    log.info("dropped at WARNING")
    log.warning("careful %s", event.get("n", 1))
    context.log("as it is")
    if event.get("fail"):
        raise ValueError("boom")
    return [type(h).__name__ for h in logging.getLogger().handlers]
"""
FILES = {
    "results.py": RESULTS,
    "logs.py": LOGS,
    "ok.py": "def handler(event, context):\n    return event\n",
    "syntax.py": "def handler(event, context)\n    return 1\n",
    "imports_missing.py": "import no_such_dependency\n",
    "not_callable.py": "handler = 'I am a string'\n",
    "pkg/__init__.py": "",
    "pkg/mod.py": "def handler(event, context):\n    return 'pkg'\n",
    "flaky_init.py": (
        "import os, pathlib\n"
        "marker = pathlib.Path(os.environ['MARKER'])\n"
        "if not marker.exists():\n"
        "    marker.write_text('failed once')\n"
        "    raise RuntimeError('first attempt fails')\n"
        "def handler(event, context):\n"
        "    return 'served'\n"
    ),
    "big.py": "def handler(event, context):\n    return 'x' * event['size']\n",
    "env.py": (
        "import os\n"
        "def handler(event, context):\n"
        "    return {k: os.environ.get(k) for k in ('AWS_REGION', 'AWS_DEFAULT_REGION',"
        " '_X_AMZN_TRACE_ID')} | {'arn': context.invoked_function_arn,"
        " 'tenant': context.tenant_id, 'w3c': context.w3c()}\n"
    ),
}


@pytest.fixture
def root(project: Any) -> Path:
    path: Path = project(FILES)
    return path


@pytest.fixture
def make(root: Path) -> Iterator[FunctionMaker]:
    with function_maker(code_root=root) as maker:
        yield maker


def awslambdaric_result(case: str, root: Path) -> Any:
    """What awslambdaric's marshaller sends, as an Invoke API caller decodes it."""
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("results")
        value = module.VALUES[case]
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("results", None)
    try:
        body, content_type = LambdaMarshaller().marshal_response(value)
    except FaultException as exc:
        return ("error", exc.exception_type, exc.msg)
    if content_type == "application/unknown":
        return body
    return json.loads(body)


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(
    "case",
    [
        "decimal",
        "decimal_nan",
        "namedtuple",
        "bytes",
        "nan",
        "nested",
        "tuple",
        "int_keys",
        "set",
        "tuple_key",
        "object",
    ],
)
def test_results_are_marshalled_as_awslambdaric_marshals_them(make, root, isolation, case):
    expected = awslambdaric_result(case, root)
    function = make("results.handler", isolation=isolation)
    try:
        got: Any = function.invoke({"case": case})
    except MarshalError as exc:
        got = ("error", exc.error_type, exc.error_message)
        # A refused result leaves the environment warm, as on Lambda.
        assert function.environments[0].state == "warm"
    if case in ("nan", "decimal_nan"):
        assert got != got and expected != expected  # NaN, both ways
    else:
        assert got == expected
        assert type(got) is type(expected)


@pytest.mark.parametrize(
    "handler",
    [
        "nodot",
        "app.mod:handler",
        "pkg.mod:handler",
        "time.handler",
        "sys.path.handler",
        "missing.handler",
        "imports_missing.handler",
        "syntax.handler",
        "ok.nothing",
        "pkg/mod.handler",
        "pkg.mod.handler",
        "not_callable.handler",
        ".handler",
    ],
)
@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_handler_strings_load_as_get_handler_loads_them(make, root, isolation, handler):
    expected = _get_handler_outcome(handler, root)
    function = make(handler, isolation=isolation)
    try:
        result = function.invoke({})
        got: tuple[Any, ...] = ("loaded", result)
    except InitError as exc:
        got = ("fault", exc.error_type, exc.error_message)
    except HandlerError as exc:
        # Loaded, then the call failed (a handler that is not callable).
        got = ("loaded", exc.error_type)
    if expected[0] == "loaded":
        assert got[0] == "loaded"
        if not callable(expected[1]):
            assert got == ("loaded", "TypeError")
    else:
        assert got == expected


def _get_handler_outcome(handler: str, root: Path) -> tuple[Any, ...]:
    """awslambdaric's verdict: its fault (type and message) or the loaded attribute."""
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        loaded = bootstrap._get_handler(handler)
    except FaultException as exc:
        return ("fault", exc.exception_type, exc.msg)
    except Exception as exc:  # the runtime reports it with the exception's class name
        return ("fault", type(exc).__name__, str(exc))
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            del sys.modules[name]
    return ("loaded", loaded)


@pytest.fixture
def awslambdaric_logging() -> Iterator[tuple[Any, list[str]]]:
    """awslambdaric's own logging setup on the root logger (restored afterwards), and
    what its sink received."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.Formatter.converter)
    received: list[str] = []

    class Sink:
        def log(self, msg: str, frame_type: Any = None) -> None:
            received.append(msg)

        def log_error(self, lines: list[str]) -> None:
            received.append("\n".join(lines))

    def setup(log_format: str | None, log_level: str | None) -> None:
        from awslambdaric.lambda_runtime_log_utils import LogFormat, _get_log_level_from_env_var

        root.handlers[:] = []
        root.setLevel(logging.WARNING)
        bootstrap._setup_logging(
            LogFormat.from_str(log_format), _get_log_level_from_env_var(log_level), Sink()
        )

    try:
        yield setup, received
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.Formatter.converter = saved[2]
        bootstrap._GLOBAL_AWS_REQUEST_ID = None


def _awslambdaric_lines(setup: Any, received: list[str], env: dict[str, str]) -> list[str]:
    setup(env.get("AWS_LAMBDA_LOG_FORMAT"), env.get("AWS_LAMBDA_LOG_LEVEL"))
    bootstrap._GLOBAL_AWS_REQUEST_ID = "REQUEST"
    log = logging.getLogger("app")
    log.info("dropped at WARNING")
    log.warning("careful %s", 1)
    return list(received)


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def _normalised(line: str, request_id: str) -> str:
    return _TIMESTAMP.sub("<time>", line.replace(request_id, "REQUEST"))


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(
    "env",
    [{}, {"AWS_LAMBDA_LOG_LEVEL": "INFO"}, {"AWS_LAMBDA_LOG_FORMAT": "JSON"}],
    ids=["text", "text-info", "json"],
)
def test_log_records_are_formatted_as_awslambdaric_formats_them(
    make, isolation, env, awslambdaric_logging
):
    setup, received = awslambdaric_logging
    expected = [_normalised(line, "REQUEST") for line in _awslambdaric_lines(setup, received, env)]
    function = make("logs.handler", isolation=isolation, env=env)
    function.invoke({})
    invocation = function.invocations[0]
    got = [
        _normalised(line, invocation.request_id)
        for line in invocation.output
        if "careful" in line or "dropped" in line
    ]
    if env.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
        # The same fields and values (location and line differ: other code logged).
        assert [json.loads(line) for line in got] == [
            json.loads(line.rstrip("\n")) for line in expected
        ]
    else:
        assert got == [line.rstrip("\n") for line in expected]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_invocation_logs_read_as_cloudwatch_shows_them(make, isolation):
    function = make("logs.handler", isolation=isolation)
    assert function.invoke({"n": 7}) == ["RuntimeLogHandler"]  # basicConfig added nothing
    with pytest.raises(HandlerError):
        function.invoke({"fail": True})
    environment = function.environments[0]
    first, second = function.invocations
    request_id = first.request_id
    assert first.logs[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert first.logs[1:-2] == [
        "line one",
        "partial line",
        "to stderr",
        f"[WARNING]\t{first.logs[4].split(chr(9))[1]}\t{request_id}\tcareful 7",
        "as it is",
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.logs[4].split("\t")[1])
    assert first.logs[-2] == f"END RequestId: {request_id}"
    assert first.logs[-1] == first.report_line
    assert re.fullmatch(
        rf"REPORT RequestId: {request_id}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
        r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms\t",
        first.report_line,
    )
    # The handler's error, logged as awslambdaric logs it.
    assert second.output[-1].startswith("[ERROR] ValueError: boom\nTraceback")
    # Init output first, then each invocation's lines.
    assert environment.logs[0] == "init print"
    assert environment.logs[1:] == [*first.logs, *second.logs]


def test_billed_duration_covers_the_init_of_a_cold_start(make):
    function = make("ok.handler")
    function.invoke({})
    function.invoke({})
    cold, warm = function.invocations
    assert cold.init_duration_ms is not None
    assert cold.billed_duration_ms == max(1, -int(-(cold.duration_ms + cold.init_duration_ms) // 1))
    assert warm.billed_duration_ms == max(1, -int(-warm.duration_ms // 1))


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_output_reaches_pytest_capture(make, isolation, capfd):
    function = make("logs.handler", isolation=isolation)
    function.invoke({})
    out, err = capfd.readouterr()
    assert "init print\n" in out
    assert "line one\npartial line\n" in out
    assert "to stderr\n" in err
    assert "\tcareful 1\n" in out
    assert "as it is" in out


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_init_that_fails_is_run_again_inside_the_first_invocation(make, isolation, tmp_path):
    function = make(
        "flaky_init.handler", isolation=isolation, env={"MARKER": str(tmp_path / "marker")}
    )
    assert function.invoke({}) == "served"
    environment = function.environments[0]
    assert environment.state == "warm"
    assert any("[ERROR] RuntimeError: first attempt fails" in line for line in environment.logs)
    report = [line for line in environment.init_output if line.startswith("INIT_REPORT")]
    assert len(report) == 1
    assert report[0].endswith("\tPhase: init\tStatus: error\tError Type: RuntimeError")
    # The first invocation served the request: not an error.
    assert function.invocations[0].error is None


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_payloads_over_six_megabytes(make, isolation):
    function = make("big.handler", isolation=isolation)
    with pytest.raises(RequestTooLargeError) as request:
        function.invoke({"size": 1, "pad": "x" * 6_291_456})
    assert request.value.error_type == "RequestEntityTooLargeException"
    assert "smaller than 6291456 bytes" in request.value.error_message
    assert function.invocations == []  # the function never ran
    with pytest.raises(ResponseTooLargeError) as response:
        function.invoke({"size": 6_300_000})
    assert response.value.error_type == "Function.ResponseSizeTooLarge"
    assert function.environments[0].state == "warm"
    assert function.invoke({"size": 3}) == "xxx"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_region_trace_header_and_context(make, isolation):
    function = make("env.handler", isolation=isolation, region="eu-west-1")
    first, second = function.invoke({}), function.invoke({})
    assert first["AWS_REGION"] == first["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert first["arn"].startswith("arn:aws:lambda:eu-west-1:")
    assert first["tenant"] is None and first["w3c"] == {}
    assert re.fullmatch(
        r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0", first["_X_AMZN_TRACE_ID"]
    )
    assert first["_X_AMZN_TRACE_ID"] != second["_X_AMZN_TRACE_ID"]


def test_reserved_variables_are_refused_naming_the_keys(root):
    with pytest.raises(
        ValueError, match="Reserved keys used in this request: AWS_REGION, LAMBDA_TASK_ROOT"
    ):
        LambdaFunction(
            "ok.handler", code_root=root, env={"AWS_REGION": "x", "LAMBDA_TASK_ROOT": "/"}
        )


def test_throttling_past_max_concurrency(project, monkeypatch):
    root = project(
        {
            "nested.py": (
                "import fidelity_registry\n"
                "def handler(event, context):\n"
                "    if event.get('outer'):\n"
                "        return fidelity_registry.function.invoke({})\n"
                "    return 'inner ran'\n"
            )
        }
    )
    registry = types.ModuleType("fidelity_registry")
    monkeypatch.setitem(sys.modules, "fidelity_registry", registry)
    with LambdaFunction("nested.handler", code_root=root, max_concurrency=1) as function:
        registry.function = function  # type: ignore[attr-defined]
        # The only environment it may have is busy: the request from inside the
        # handler is throttled, and never reaches an environment.
        with pytest.raises(HandlerError) as failure:
            function.invoke({"outer": True})
        assert failure.value.error_type == "TooManyRequestsError"
        # The Invoke API's answer: its type and message, nothing else.
        assert function.throttles[0].error == {
            "errorType": "TooManyRequestsException",
            "errorMessage": "Rate Exceeded.",
        }
        assert function.throttles[0].request_id.endswith("2")  # the second request
        assert len(function.environments) == 1


def test_invoke_many_throttles_the_requests_past_max_concurrency(root):
    with LambdaFunction("ok.handler", code_root=root, max_concurrency=2) as function:
        with pytest.raises(TooManyRequestsError) as failure:
            function.invoke_many([{"n": n} for n in range(6)], concurrency=3)
        assert failure.value.error_type == "TooManyRequestsException"
        # Every event ran or was throttled: 2 of each wave of 3 ran.
        assert len(function.invocations) == 4
        assert len(function.throttles) == 2
        assert len(function.environments) == 2


@pytest.mark.parametrize(
    ("config", "error", "words"),
    [
        ({"timeout": float("nan")}, ValueError, "timeout=nan"),
        ({"idle_timeout": float("nan")}, ValueError, "idle_timeout=nan"),
        ({"env": {"A": "x\0y"}}, ValueError, "NUL"),
        ({"function_name": "has space"}, ValueError, "1 to 64 letters"),
        ({"function_name": "x" * 65}, ValueError, "1 to 64 letters"),
        ({"code_root": 5}, TypeError, "code_root must be a folder path"),
        ({"region": "mars"}, ValueError, "region='mars'"),
    ],
)
def test_bad_settings_say_what_is_wrong(root, config, error, words):
    config.setdefault("code_root", root)
    with pytest.raises(error, match=re.escape(words)):
        LambdaFunction("ok.handler", **config)


@pytest.mark.parametrize(
    ("event", "error", "words"),
    [
        ({"a": [1, float("nan")]}, ValueError, "NaN or Infinity at event['a'][1]"),
        ({"when": object()}, TypeError, "JSON-serialisable"),
    ],
)
def test_bad_events_say_what_is_wrong_before_anything_runs(make, event, error, words):
    function = make("ok.handler")
    with pytest.raises(error, match=re.escape(words)):
        function.invoke(event)
    assert function.environments == []


def test_an_event_nested_too_deeply_is_a_clear_error(make):
    event: Any = []
    for _ in range(100_000):
        event = [event]
    function = make("ok.handler")
    with pytest.raises(ValueError, match="nested too deeply"):
        function.invoke(event)


def test_a_bad_max_connections_port_is_reported_at_collection(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.max_connections(1, port=99999)
        def test_it():
            pass
        """
    )
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["*port=99999 is out of range*between 1 and 65535*"])
    assert result.ret != 0


def test_a_timeout_shows_in_the_report_line(project):
    root = project({"slow.py": "import time\ndef handler(event, context):\n    time.sleep(5)\n"})
    with LambdaFunction("slow.handler", code_root=root, timeout=0.2) as function:
        with pytest.raises(InvocationTimeout):
            function.invoke({})
        assert function.invocations[0].report_line.endswith("\tStatus: timeout")


def test_lambda_errors_keep_their_payload_shape(make):
    function = make("results.handler")
    with pytest.raises(LambdaError) as failure:
        function.invoke({"case": "set"})
    assert set(failure.value.payload) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert Decimal("1.10") == Decimal(str(function.invoke({"case": "decimal"})))


# -- The runtime contract side by side with awslambdaric's own loop ------------------------
# Each case runs through awslambdaric 4.2.2's bootstrap.run (tests/_awslambdaric_run.py:
# its loop, its client, its log sink; only the transport under the client is recorded)
# and through the plugin, on the same handler files, in both isolations.

CASES = """
import sys
class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str")
def handler(event, context):
    case = event["case"]
    if case == "raise":
        table = {"a": {}}
        return table["a"]["missing"] + 1
    if case == "raise_non_ascii":
        raise ValueError("caf\\u00e9 \\u2603")
    if case == "exit_zero":
        sys.exit(0)
    if case == "exit_text":
        sys.exit("bye")
    if case == "exit_three":
        sys.exit(3)
    if case == "unprintable":
        raise Unprintable()
    if case == "huge_int":
        return 10**5000
    if case == "huge_int_in_dict":
        return {"n": 10**5000}
    if case == "lone_surrogate":
        return "\\ud800"
    if case == "blank_lines":
        print()
        print("between")
        print("")
        return 1
    if case == "many_ints":
        # Few characters of keys and strings, over 6 MB once encoded.
        return {chr(0x100 + i): 10**18 for i in range(260_000) if not 0xD800 <= 0x100 + i < 0xE000}
    if case == "emoji":
        return "\\U0001F600" * 600_000
    return "ok"
"""
RUNTIME_FILES = {
    "cases.py": CASES,
    "not_callable.py": "handler = 5\n",
    "init_raises.py": "table = {'a': {}}\nvalue = table['a']['missing'] + 1\n",
    "init_exits.py": "import sys\nsys.exit(4)\n",
}
RESPONSE_LIMIT = 6_291_556


@pytest.fixture
def runtime_root(project: Any) -> Path:
    path: Path = project(RUNTIME_FILES)
    return path


def _exit_reason(returncode: int) -> str:
    """Lambda's message for a runtime process that ended with ``returncode``."""
    if returncode == 0:
        return "Runtime exited without providing a reason"
    if returncode < 0:
        return f"Runtime exited with error: signal: {signal.strsignal(-returncode).lower()}"
    return f"Runtime exited with error: exit status {returncode}"


def _awslambdaric_verdict(root: Path, handler: str, event: Any, env: Any = None) -> Any:
    """What a caller of the Invoke API gets from awslambdaric's loop for one event,
    request id "REQUEST": the runtime's posts, plus Lambda's part (a runtime that
    exited; a response over 6 MB)."""
    run = run_awslambdaric(
        root, handler, [{"request_id": "REQUEST", "body": json.dumps(event)}], env=env
    )
    for posted in run.posted:
        if posted.kind in ("error", "init_error"):
            return ("error", posted.body), run
        if len(posted.raw) > RESPONSE_LIMIT:
            return ("error", _TOO_LARGE), run
        return ("result", posted.body), run
    return ("error", _exit_error(run.returncode, "REQUEST")), run


_TOO_LARGE = {
    "errorType": "Function.ResponseSizeTooLarge",
    "errorMessage": (
        f"Response payload size exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes)."
    ),
}


def _exit_error(returncode: int, request_id: str) -> dict[str, str]:
    return {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id} Error: {_exit_reason(returncode)}",
    }


def _plugin_verdict(function: LambdaFunction, event: Any) -> Any:
    """The same from the plugin, its request id written as "REQUEST"."""
    try:
        return ("result", function.invoke(event))
    except LambdaError as exc:
        request_id = function.invocations[-1].request_id
        payload = json.loads(json.dumps(exc.payload).replace(request_id, "REQUEST"))
        return ("error", payload)


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(
    "case",
    [
        "raise",
        "raise_non_ascii",
        "exit_zero",
        "exit_text",
        "exit_three",
        "unprintable",
        "huge_int",
        "huge_int_in_dict",
        "lone_surrogate",
        "many_ints",
        "emoji",
    ],
)
def test_errors_and_results_match_awslambdaric_and_lambda(runtime_root, isolation, case):
    """Items 1, 3, 4, 5, 6 of the runtime contract: stack traces without caret lines,
    Lambda's own errors with two keys and AWS's text, the marshaller's refusals and the
    size limit on the fast path, an exception whose __str__ raises, a lone surrogate."""
    event = {"case": case}
    expected, _ = _awslambdaric_verdict(runtime_root, "cases.handler", event)
    # A generous timeout: encoding 8 MB on a loaded machine is no timeout case; and the
    # memory for it (awslambdaric's run has no limit): these cases are not about memory.
    with lambda_function(
        "cases.handler", code_root=runtime_root, isolation=isolation, timeout=60, memory_mb=1024
    ) as function:
        got = _plugin_verdict(function, event)
    if expected == ("result", "\ud800") or got[0] == "error":
        assert got == expected
    else:  # a result: equal, and of the same type
        assert got == expected and type(got[1]) is type(expected[1])


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_the_error_log_entry_matches_awslambdaric(runtime_root, isolation):
    """The [ERROR] entry: awslambdaric joins its lines with carriage returns (one
    CloudWatch event), the plugin keeps them as one event."""
    _, run = _awslambdaric_verdict(runtime_root, "cases.handler", {"case": "raise"})
    with lambda_function("cases.handler", code_root=runtime_root, isolation=isolation) as function:
        with pytest.raises(HandlerError):
            function.invoke({"case": "raise"})
        (entry,) = [line for line in function.invocations[0].output if "[ERROR]" in line]
    (expected,) = [line for line in run.log_events if "[ERROR]" in line]
    assert entry.split("\n") == expected.split("\r")
    assert "^" not in entry and "~" not in entry


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_json_error_record_is_written_as_awslambdaric_writes_it(runtime_root, isolation):
    """With AWS_LAMBDA_LOG_FORMAT=JSON, non-ASCII escaped up to Python 3.11 and written
    as it is from 3.12, as awslambdaric's encoder does for this interpreter's runtime."""
    env = {"AWS_LAMBDA_LOG_FORMAT": "JSON"}
    event = {"case": "raise_non_ascii"}
    _, run = _awslambdaric_verdict(runtime_root, "cases.handler", event, env=env)
    (expected,) = [line for line in run.log_events if '"level": "ERROR"' in line]
    with lambda_function(
        "cases.handler", code_root=runtime_root, isolation=isolation, env=env
    ) as function:
        with pytest.raises(HandlerError):
            function.invoke(event)
        request_id = function.invocations[0].request_id
        (entry,) = [line for line in function.invocations[0].output if '"level": "ERROR"' in line]
    expected = _TIMESTAMP.sub("<time>", expected.replace("REQUEST", "<id>"))
    assert _TIMESTAMP.sub("<time>", entry.replace(request_id, "<id>")) == expected


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("handler", ["init_raises.handler", "init_exits.handler"])
def test_init_errors_match_awslambdaric(runtime_root, isolation, handler):
    """Item 2: an init error's requestId is "" and its stack trace has no caret lines;
    init code that exits is Lambda's Runtime.ExitError."""
    expected, _ = _awslambdaric_verdict(runtime_root, handler, {})
    with lambda_function(handler, code_root=runtime_root, isolation=isolation) as function:
        with pytest.raises(InitError) as failure:
            function.invoke({})
        request_id = function.invocations[-1].request_id
    payload = json.loads(json.dumps(failure.value.payload).replace(request_id, "REQUEST"))
    assert ("error", payload) == expected
    if handler == "init_raises.handler":
        assert payload["requestId"] == ""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_handler_that_is_not_callable_keeps_the_runtimes_frame(runtime_root, isolation):
    """Item 12: the TypeError's stack trace is the runtime's own frame, where it called
    the handler (awslambdaric's handle_event_request; the plugin's call_handler)."""
    (kind, expected), _ = _awslambdaric_verdict(runtime_root, "not_callable.handler", {})
    with (
        lambda_function(
            "not_callable.handler", code_root=runtime_root, isolation=isolation
        ) as function,
        pytest.raises(HandlerError) as failure,
    ):
        function.invoke({})
    payload = failure.value.payload
    assert kind == "error"
    assert (payload["errorType"], payload["errorMessage"]) == (
        expected["errorType"],
        expected["errorMessage"],
    )
    assert len(payload["stackTrace"]) == len(expected["stackTrace"]) == 1
    for trace, runtime_file in (
        (expected, "awslambdaric/bootstrap.py"),
        (payload, "runtime/handler.py"),
    ):
        frame = trace["stackTrace"][0]
        assert runtime_file in frame and "context)" in frame and "^" not in frame


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_blank_print_lines_are_no_log_events(runtime_root, isolation):
    """Item 7: what the runtime wrote, less the empty lines Lambda drops."""
    _, run = _awslambdaric_verdict(runtime_root, "cases.handler", {"case": "blank_lines"})
    assert run.stdout == "\nbetween\n\n"
    with lambda_function("cases.handler", code_root=runtime_root, isolation=isolation) as function:
        function.invoke({"case": "blank_lines"})
        assert function.invocations[0].output == run.log_events == ["between"]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_lambdas_own_errors_carry_two_keys_and_awss_text(project, isolation):
    """Item 3, from AWS's documented payloads: a timeout is "RequestId: <id> Error: Task
    timed out after 0.30 seconds"; the REPORT line ends with its Status field, a REPORT
    line without one ends with a tab (as CloudWatch records them)."""
    root = project(
        {"slow.py": "import time\ndef handler(event, context):\n    time.sleep(event)\n"}
    )
    with lambda_function(
        "slow.handler", code_root=root, isolation=isolation, timeout=0.3
    ) as function:
        assert function.invoke(0) is None
        with pytest.raises(InvocationTimeout) as failure:
            function.invoke(5)
        fast, slow = function.invocations
    assert failure.value.payload == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {slow.request_id} Error: Task timed out after 0.30 seconds",
    }
    assert fast.report_line.endswith(" ms\t")
    assert slow.report_line.endswith(" MB\tStatus: timeout")


VARIABLES = """
import os
def handler(event, context):
    return dict(os.environ)
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_the_defined_runtime_variables_are_set(project, isolation):
    """Item 8, from AWS's "Defined runtime environment variables": the reserved ones
    (refused in env) and those Lambda sets that env may override."""
    root = project({"variables.py": VARIABLES})
    with lambda_function(
        "variables.handler", code_root=root, isolation=isolation, env={"PYTHONPATH": "/opt/mine"}
    ) as function:
        environ = function.invoke({})
    expected = {
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "LAMBDA_TASK_ROOT": str(root),
        "LD_LIBRARY_PATH": (
            "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:"
            f"{root}:{root}/lib:/opt/lib"
        ),
        "LC_CTYPE": "C.UTF-8",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
        "TZ": ":UTC",
        # Not reserved: the function's own value wins.
        "PYTHONPATH": "/opt/mine",
    }
    assert {name: environ.get(name) for name in expected} == expected
    with pytest.raises(ValueError, match="Reserved keys used in this request: LAMBDA_RUNTIME_DIR"):
        LambdaFunction("variables.handler", code_root=root, env={"LAMBDA_RUNTIME_DIR": "/x"})


CONTEXT_FIELDS = """
import logging
def handler(event, context):
    logging.getLogger().warning("tenant's record")
    client = context.client_context
    return {
        "client_context": repr(client),
        "custom": None if client is None else client.custom,
        "env": None if client is None else client.env,
        "app_title": None if client is None or client.client is None else client.client.app_title,
        "identity": repr(context.identity),
        "identity_id": context.identity.cognito_identity_id,
        "pool_id": context.identity.cognito_identity_pool_id,
        "tenant_id": context.tenant_id,
        "w3c": context.w3c(),
    }
"""
CLIENT_CONTEXT = {
    "client": {"installation_id": "i-1", "app_title": "Shop", "app_version_code": "7"},
    "custom": {"cart": [1, 2]},
    "env": {"platform": "Android"},
    "w3c": {"traceparent": "00-abc-def-01", "baggage": 5, "other": "dropped"},
}
IDENTITY = {"cognitoIdentityId": "us-east-1:id", "cognitoIdentityPoolId": "us-east-1:pool"}


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(
    "passed",
    [
        {},
        {"client_context": CLIENT_CONTEXT},
        {"client_context": {"custom": {"k": "v"}}, "identity": IDENTITY, "tenant_id": "tenant-1"},
        {"client_context": CLIENT_CONTEXT, "identity": IDENTITY, "tenant_id": "t 2@x.y"},
    ],
    ids=["nothing", "client-context", "partial", "everything"],
)
def test_what_a_caller_passes_reaches_the_context_as_awslambdaric_builds_it(
    project, isolation, passed
):
    """invoke(event, client_context=, identity=, tenant_id=): compared with
    awslambdaric's create_lambda_context fed the Runtime API headers Lambda sends."""
    root = project({"fields.py": CONTEXT_FIELDS})
    headers = {
        "client_context": json.dumps(passed["client_context"])
        if "client_context" in passed
        else None,
        "identity": json.dumps(passed["identity"]) if "identity" in passed else None,
        "tenant_id": passed.get("tenant_id"),
    }
    env = {"AWS_LAMBDA_LOG_FORMAT": "JSON"}
    run = run_awslambdaric(
        root, "fields.handler", [{"request_id": "R", "body": "{}", **headers}], env
    )
    (posted,) = run.posted
    (expected_record,) = [json.loads(line) for line in run.log_events if "tenant's record" in line]
    with lambda_function(
        "fields.handler", code_root=root, isolation=isolation, env=env
    ) as function:
        got = function.invoke({}, **passed)
        (record,) = [
            json.loads(line) for line in function.invocations[0].output if "tenant's record" in line
        ]
    assert got == posted.body
    # The runtime's log records carry the request's tenant, as awslambdaric's do.
    assert record.get("tenantId") == expected_record.get("tenantId") == passed.get("tenant_id")


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_tenants_requests_go_only_to_its_own_environments(project, isolation):
    """Tenant isolation mode (AWS's "Tenant isolation"): an environment serves one tenant;
    a tenant's request goes to an idle environment of that tenant, else a new one."""
    root = project({"fields.py": CONTEXT_FIELDS})
    with lambda_function("fields.handler", code_root=root, isolation=isolation) as function:
        for tenant in ("a", "b", "a", None, "b"):
            assert function.invoke({}, tenant_id=tenant)["tenant_id"] == tenant
        by_environment = {
            env.id: [i.cold for i in env.invocations] for env in function.environments
        }
        assert [env.tenant_id for env in function.environments] == ["a", "b", None]
        assert by_environment == {"env-1": [True, False], "env-2": [True, False], "env-3": [True]}
        with pytest.raises(ValueError, match="env-1 serves tenant_id='a', not 'b'"):
            function.environments[0].invoke({}, tenant_id="b")


@pytest.mark.parametrize(
    ("passed", "error", "words"),
    [
        ({"client_context": ["not", "a", "dict"]}, TypeError, "client_context must be a dict"),
        ({"client_context": {"client": "x"}}, TypeError, "'client' a dict"),
        ({"client_context": {"custom": {"x": "y" * 3000}}}, ValueError, "at most 3583 bytes"),
        ({"identity": {"id": "x"}}, TypeError, "{'cognitoIdentityId': '...'"),
        ({"tenant_id": ""}, ValueError, "1 to 256 characters"),
        ({"tenant_id": "no\\nnewline"}, ValueError, "tenant_id="),
    ],
)
def test_what_a_caller_passes_is_checked_before_anything_runs(project, passed, error, words):
    root = project({"fields.py": CONTEXT_FIELDS})
    with LambdaFunction("fields.handler", code_root=root) as function:
        with pytest.raises(error, match=re.escape(words)):
            function.invoke({}, **passed)
        assert function.environments == []


def test_the_fidelity_table_counts_true_and_names_real_tests():
    """docs/fidelity.md: the count at the top of the table is the table's, every row is
    ✔ or a stated gap, and every test a row names exists."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "fidelity.md").read_text(encoding="utf-8")
    count = re.search(
        r"<!-- fidelity-count -->\*\*(\d+) behaviours: (\d+) match \(✔\), (\d+) are "
        r"documented gaps\.\*\*",
        text,
    )
    assert count is not None
    table = text[count.end() :].split("\n\n")[1]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert all(len(row) == 3 for row in rows)
    matches = [row for row in rows if row[1] == "✔"]
    gaps = [row for row in rows if row[1].startswith("gap")]
    assert (len(rows), len(matches), len(gaps)) == tuple(int(n) for n in count.groups())
    for row in rows:
        named = row[2].rstrip(" |").strip("`")
        if named == "—":
            assert row in gaps, f"a ✔ row must name its test: {row[0]}"
            continue
        file, _, test = named.partition("::")
        assert f"def {test}(" in (root / "tests" / file).read_text(encoding="utf-8"), named
