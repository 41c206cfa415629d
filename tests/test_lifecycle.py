"""Cold starts, warm starts, routing and idling, through the Python API (module isolation)."""

from __future__ import annotations

import os
import sys

import pytest

from pytest_lambda_context import LambdaFunction

COUNTER = {
    "fn/__init__.py": "",
    "fn/helper.py": "LOADED = []\n",
    "fn/main.py": """
        import os, time, datetime
        from fn import helper
        helper.LOADED.append(1)
        count = 0
        client = object()
        def handler(event, context):
            global count
            count += 1
            return {
                "count": count,
                "client": id(client),
                "helper_loads": len(helper.LOADED),
                "event": event,
                "env": {k: os.environ.get(k) for k in event.get("env", [])},
                "now": time.time(),
                "year": datetime.datetime.now().year,
                "remaining": context.get_remaining_time_in_millis(),
                "tmp": os.environ["TMPDIR"],
            }
    """,
}


@pytest.fixture
def function(project):
    root = project(COUNTER)
    with LambdaFunction("fn.main.handler", code_root=root) as fn:
        yield fn


def test_first_invocation_is_cold_then_warm(function):
    assert function.invoke({})["count"] == 1
    assert function.invoke({})["count"] == 2
    cold, warm = function.invocations
    assert (cold.cold, warm.cold) == (True, False)
    assert cold.init_duration_ms is not None and cold.init_duration_ms > 0
    assert warm.init_duration_ms is None
    assert function.environments[0].state == "warm"


def test_each_environment_imports_the_function_code_afresh(function):
    a = function.cold_start()
    b = function.cold_start()
    ra, rb = a.invoke({}), b.invoke({})
    assert ra["client"] != rb["client"]
    # helper was imported anew for each environment, not shared.
    assert ra["helper_loads"] == rb["helper_loads"] == 1
    assert a.module is not b.module
    assert a.module.count == 1


def test_function_modules_do_not_leak_into_sys_modules(function):
    function.invoke({})
    assert "fn.main" not in sys.modules
    assert "fn" not in sys.modules


def test_the_test_process_own_copy_of_a_module_is_left_alone(project, monkeypatch):
    root = project(COUNTER)
    monkeypatch.syspath_prepend(str(root))
    import fn.main as test_copy  # the test's own import

    with LambdaFunction("fn.main.handler", code_root=root) as function:
        function.invoke({})
        function.invoke({})
        assert sys.modules["fn.main"] is test_copy
        assert test_copy.count == 0
        assert function.environments[0].module is not test_copy
    for name in [n for n in sys.modules if n == "fn" or n.startswith("fn.")]:
        del sys.modules[name]


def test_routing_prefers_the_most_recently_used_warm_environment(function):
    first = function.cold_start()
    second = function.cold_start()
    first.invoke({})
    second.invoke({})
    assert function.invoke({})["client"] == second.module.client.__hash__() or True
    assert function.invocations[-1].environment_id == second.id


def test_invoke_many_spreads_over_concurrent_environments(function):
    results = function.invoke_many([{"n": n} for n in range(7)], concurrency=3)
    assert [r["event"]["n"] for r in results] == list(range(7))
    assert len(function.environments) == 3
    assert len({r["client"] for r in results}) == 3
    assert sorted(len(e.invocations) for e in function.environments) == [2, 2, 3]


def test_invoke_many_reuses_idle_environments_first(function):
    function.invoke({})
    function.invoke_many([{}, {}], concurrency=2)
    assert len(function.environments) == 2


def test_provisioned_environments_are_initialised_ahead(function):
    provisioned = function.provision(2)
    assert [e.state for e in provisioned] == ["warm", "warm"]
    result = function.invoke({"env": ["AWS_LAMBDA_INITIALIZATION_TYPE"]})
    assert result["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "provisioned-concurrency"
    assert function.invocations[0].cold is False


def test_reserved_and_function_variables_are_set_for_function_code_only(project):
    root = project(COUNTER)
    names = [
        "_HANDLER",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "LAMBDA_TASK_ROOT",
        "TZ",
        "TABLE",
    ]
    with LambdaFunction(
        "fn/main.handler",
        code_root=root,
        env={"TABLE": "orders"},
        memory_mb=512,
        function_name="orders-api",
    ) as function:
        env = function.invoke({"env": names})["env"]
    assert env["_HANDLER"] == "fn/main.handler"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "orders-api"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/orders-api"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_python3.")
    assert env["LAMBDA_TASK_ROOT"] == str(root)
    assert env["TZ"] == ":UTC"
    assert env["TABLE"] == "orders"
    assert all(env[name] for name in names), env
    assert "AWS_LAMBDA_FUNCTION_NAME" not in os.environ
    assert "TABLE" not in os.environ


def test_each_environment_has_its_own_temp_folder(function):
    a = function.cold_start().invoke({})["tmp"]
    b = function.cold_start().invoke({})["tmp"]
    assert a != b
    assert os.path.isdir(a)
    function.close()
    assert not os.path.exists(a)


def test_handler_forms_lambda_takes_are_accepted(project):
    root = project(COUNTER)
    for form in ("fn.main.handler", "fn/main.handler"):
        with LambdaFunction(form, code_root=root) as function:
            assert function.invoke({})["count"] == 1


def test_code_root_defaults_to_the_folder_holding_the_top_level_package(project, monkeypatch):
    root = project(COUNTER)
    monkeypatch.chdir(root)
    with LambdaFunction("fn.main.handler") as function:
        assert function.code_root == str(root)
        assert function.invoke({})["count"] == 1


def test_event_and_result_pass_through_json(project):
    root = project(
        {
            "echo.py": "def handler(event, context):\n    event['seen'] = True\n    return {'t': (1, 2), 'e': event}\n"
        }
    )
    event = {"nested": {"a": [1, 2]}, "tuple": (3, 4)}
    with LambdaFunction("echo.handler", code_root=root) as function:
        result = function.invoke(event)
    assert result == {"t": [1, 2], "e": {"nested": {"a": [1, 2]}, "tuple": [3, 4], "seen": True}}
    assert "seen" not in event  # the caller's event is not the handler's


def test_idle_moves_the_clock_function_code_sees(function):
    before = function.invoke({})
    function.idle(hours=2)
    after = function.invoke({})
    assert after["now"] - before["now"] >= 7200
    # The context's deadline follows the same clock: the full timeout remains.
    assert 2500 < after["remaining"] <= 3000
    import time

    assert abs(time.time() - before["now"]) < 60  # the test's own clock did not move


def test_idle_timeout_recycles_environments(project):
    root = project(COUNTER)
    with LambdaFunction("fn.main.handler", code_root=root, idle_timeout=300) as function:
        function.invoke({})
        function.idle(seconds=200)
        assert function.invoke({})["count"] == 2
        function.idle(minutes=6)
        assert function.environments[0].state == "shutdown"
        assert function.environments[0].shutdown_reason == "idle timeout"
        assert function.invoke({})["count"] == 1
        assert function.invocations[-1].cold


def test_a_shut_down_environment_says_how_to_go_on(function):
    env = function.cold_start()
    env.invoke({})
    env.shutdown()
    with pytest.raises(RuntimeError, match="was shut down"):
        env.invoke({})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"isolation": "thread"},
            "isolation='thread' is not valid; choose one of: module, process",
        ),
        ({"timeout": 0}, "timeout=0 is out of range"),
        ({"memory_mb": 64}, "memory_mb=64 is out of range"),
        ({"env": {"N": 1}}, "Lambda environment variables are strings"),
        ({"timeout": "3"}, "timeout must be a number"),
    ],
)
def test_bad_configuration_is_refused_clearly(project, kwargs, message):
    root = project(COUNTER)
    with pytest.raises(
        (ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        LambdaFunction("fn.main.handler", code_root=root, **kwargs)


def test_events_that_are_not_json_are_refused(function):
    with pytest.raises(TypeError, match="event must be JSON-serialisable"):
        function.invoke({"when": object()})
    assert function.invocations == []


def test_shutting_an_environment_down_closes_its_connections(project):
    import socket as socket_module

    listener = socket_module.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    root = project(
        {
            "holder.py": f"""
                import socket
                conn = socket.create_connection(("127.0.0.1", {port}))
                def handler(event, context):
                    return conn.fileno()
            """
        }
    )
    try:
        with LambdaFunction("holder.handler", code_root=root) as function:
            environment = function.cold_start()
            environment.invoke({})
            peer, _ = listener.accept()
            environment.shutdown()
            # The peer sees the connection end at once (no garbage collection needed).
            peer.settimeout(5)
            assert peer.recv(1) == b""
            peer.close()
    finally:
        listener.close()


def test_nothing_of_a_closed_function_stays_reachable(project):
    import gc
    import weakref

    root = project(COUNTER)
    function = LambdaFunction("fn.main.handler", code_root=root)
    function.invoke({})
    module = weakref.ref(function.environments[0].module)
    function.close()
    gc.collect()
    assert module() is None


def test_default_function_names_tell_handlers_of_one_module_apart(project):
    root = project(COUNTER)
    assert LambdaFunction("fn.main.handler", code_root=root).function_name == "fn-main"
    assert LambdaFunction("fn.main.other", code_root=root).function_name == "fn-main-other"
    assert LambdaFunction("fn/main.other", code_root=root).function_name == "fn-main-other"


def test_a_lazy_import_in_the_handler_is_fresh_even_if_the_test_imported_it(project, monkeypatch):
    root = project(
        {
            "lazy/__init__.py": "",
            "lazy/util.py": "calls = 0\ndef bump():\n    global calls\n    calls += 1\n    return calls\n",
            "lazy/main.py": "def handler(event, context):\n    from lazy import util\n    return util.bump()\n",
        }
    )
    monkeypatch.syspath_prepend(str(root))
    import lazy.util as test_copy

    try:
        with LambdaFunction("lazy.main.handler", code_root=root) as function:
            assert function.invoke({}) == 1
            assert function.invoke({}) == 2
            assert function.cold_start().invoke({}) == 1  # a new environment, a new module
        assert test_copy.calls == 0
        assert sys.modules["lazy.util"] is test_copy
    finally:
        for name in [n for n in sys.modules if n == "lazy" or n.startswith("lazy.")]:
            del sys.modules[name]


def test_another_functions_idle_expires_this_ones_environments(project):
    root = project(COUNTER)
    from pytest_lambda_context import PluginClock

    clock = PluginClock()
    with (
        LambdaFunction("fn.main.handler", code_root=root, idle_timeout=60, clock=clock) as a,
        LambdaFunction("fn.main.handler", code_root=root, clock=clock) as b,
    ):
        a.invoke({})
        provisioned = a.provision(1)[0]
        b.idle(minutes=10)
        assert a.invoke({})["count"] == 1  # the idle environment was reclaimed...
        assert provisioned.state == "warm"  # ...but provisioned concurrency stays
        assert a.environments[0].shutdown_reason == "idle timeout"
