"""Module isolation: function code cannot break the session, and what it changes
process-wide is its environment's own, put back at shutdown, or named in an
IsolationLeakWarning. Each test runs a real pytest session over real handler files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLER = """
    import atexit, builtins, decimal, faulthandler, gc, locale, os, random, resource, socket
    import sys, threading

    atexit.register(print, "ATEXIT OF INIT RAN")
    LISTENING = []

    def handler(event, context):
        action = event.get("action")
        if action == "fork":
            pid = os.fork()
            if pid == 0:
                if event.get("exit") is not None:
                    sys.exit(event["exit"])
                if event.get("raise"):
                    raise RuntimeError("in the child")
                return {"child": True}
            return {"status": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}
        if action == "close stdout":
            sys.stdout.close()
        if action == "print":
            print("printed by the handler")
        if action == "rebind environ":
            os.environ = {"REBOUND": "1"}
        if action == "block json":
            sys.modules["json"] = None
        if action == "delete then import":
            del sys.modules[event["delete"]]
            from app import helper
        if action == "leak":
            socket.setdefaulttimeout(3)
            decimal.getcontext().prec = 3
            gc.disable()
            sys.setswitchinterval(0.5)
            builtins.print = lambda *args, **kwargs: None
            sys.displayhook = lambda value: None
            if hasattr(sys, "set_int_max_str_digits"):  # 3.11, and 3.10's later patches
                sys.set_int_max_str_digits(1000)
            random.seed(1)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))
            sys.unraisablehook = lambda unraisable: None
            sys.setprofile(lambda *args: None)
            threading.settrace(lambda *args: None)
            locale.setlocale(locale.LC_NUMERIC, event["locale"])
            builtins.ADDED_BY_THE_HANDLER = True
        if action == "disable faulthandler":
            faulthandler.disable()
        if action == "atexit":
            atexit.register(print, "ATEXIT OF AN INVOCATION RAN")

            @atexit.register
            def decorated():
                print("DECORATED ATEXIT RAN")

            return {"decorated": callable(decorated)}
        if action == "listen":
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen()
            LISTENING.append(server)
            return server.getsockname()[1]
        if action == "whoami":
            return {
                "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
                "home": "HOME" in os.environ,
                "thread": threading.get_ident(),
            }
        return {"environ": type(os.environ).__name__, "rebound": os.environ.get("REBOUND")}
"""


def write_project(pytester: pytest.Pytester, test: str) -> None:
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "__init__.py").write_text("")
    (pytester.path / "app" / "handler.py").write_text(textwrap.dedent(HANDLER))
    (pytester.path / "app" / "helper.py").write_text("VALUE = 1\n")
    pytester.makepyfile(test_session=textwrap.dedent(test))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_a_forked_child_ends_where_the_handler_returns_with_its_status(pytester):
    write_project(
        pytester,
        """
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.handler.handler")

        @pytest.mark.parametrize(
            ("how", "status"), [({}, 0), ({"exit": 3}, 3), ({"exit": None}, 0), ({"raise": 1}, 1)]
        )
        def test_fork(lambda_function, how, status):
            assert lambda_function.invoke({"action": "fork", **how}) == {"status": status}

        def test_later():
            pass
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=5)
    # One session: the children ran no test and printed no summary of their own.
    assert result.stdout.str().count("passed") == 1


def test_closing_sys_stdout_closes_the_environments_stream_not_pytests(pytester):
    write_project(
        pytester,
        """
        import pytest
        from pytest_lambda_context import HandlerError

        pytestmark = pytest.mark.lambda_handler("app.handler.handler")

        def test_close(lambda_function, capsys):
            lambda_function.invoke({"action": "close stdout"})
            # As in the runtime's process: its stdout stays closed for later invocations.
            with pytest.raises(HandlerError, match="closed file"):
                lambda_function.invoke({"action": "print"})
            print("the test still prints")
            assert "the test still prints" in capsys.readouterr().out

        def test_later(lambda_function, capsys):
            lambda_function.invoke({"action": "print"})
            assert "printed by the handler" in capsys.readouterr().out
        """,
    )
    run(pytester).assert_outcomes(passed=2)


def test_one_function_invoked_from_several_threads(pytester):
    write_project(
        pytester,
        """
        import os, threading
        import pytest

        @pytest.mark.lambda_handler("app.handler.handler")
        def test_threads(lambda_function):
            before = dict(os.environ)
            results, errors = [], []

            def work():
                try:
                    for _ in range(50):
                        results.append(lambda_function.invoke({"action": "whoami"}))
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=work) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert len(results) == 200
            # Each invocation saw its environment's variables, never the test's...
            assert {r["function"] for r in results} == {lambda_function.function_name}
            assert not any(r["home"] for r in results)
            # ...and the test is left with its own.
            assert dict(os.environ) == before
        """,
    )
    run(pytester).assert_outcomes(passed=1)


def test_rebinding_os_environ_stays_in_the_environment(pytester):
    write_project(
        pytester,
        """
        import os
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.handler.handler")

        def test_rebind(lambda_function):
            lambda_function.invoke({"action": "rebind environ"})
            assert isinstance(os.environ, os._Environ)
            assert "REBOUND" not in os.environ
            # The environment keeps what its code bound, as a runtime process would.
            assert lambda_function.invoke({}) == {"environ": "dict", "rebound": "1"}
            assert isinstance(os.environ, os._Environ)

        def test_later(lambda_function):
            assert lambda_function.invoke({}) == {"environ": "_Environ", "rebound": None}
        """,
    )
    run(pytester).assert_outcomes(passed=2)


def test_a_blocked_import_breaks_neither_the_plugin_nor_later_tests(pytester):
    write_project(
        pytester,
        """
        import pytest

        @pytest.mark.lambda_handler("app.handler.handler")
        @pytest.mark.max_connections(0)
        def test_block(lambda_function):
            lambda_function.invoke({"action": "block json"})
            assert False, "fails, so that the REPORT lines are shown"

        def test_later():
            import json
            assert json.dumps(1) == "1"
        """,
    )
    result = run(pytester, "--lambda-report=report.json")
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*IsolationLeakWarning: function code of app-handler (module isolation)*",
            "*Put back when the environment shut down: sys.modules?'json'? (set to None).",
            '*Remedy:*isolation="process"*',
        ]
    )
    assert (pytester.path / "report.json").exists()


def test_a_function_module_imported_after_deleting_an_entry_is_not_left_behind(pytester):
    write_project(
        pytester,
        """
        import sys
        import pytest

        @pytest.mark.lambda_handler("app.handler.handler")
        def test_delete(lambda_function):
            import textwrap  # the entry the handler deletes
            sys.modules.pop("app.helper", None)
            lambda_function.invoke({"action": "delete then import", "delete": "textwrap"})
            assert "app.helper" not in sys.modules
        """,
    )
    result = run(pytester, "-W", "ignore::pytest_lambda_context.IsolationLeakWarning")
    result.assert_outcomes(passed=1)


def test_process_wide_changes_are_put_back_and_named(pytester):
    write_project(
        pytester,
        """
        import builtins, decimal, gc, locale, random, resource, socket, sys, threading
        import pytest

        STATE = []
        NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)
        HOOK, PROFILE, TRACE = sys.unraisablehook, sys.getprofile(), threading.gettrace()
        NUMERIC = locale.setlocale(locale.LC_NUMERIC)
        # A locale other than the test's, so that the change is one.
        OTHER = "C" if NUMERIC != "C" else "C.UTF-8"

        @pytest.mark.lambda_handler("app.handler.handler")
        def test_leak(lambda_function):
            random.seed(7)
            STATE.append(random.getstate())
            lambda_function.invoke({"action": "leak", "locale": OTHER})

        def test_later():
            assert random.getstate() == STATE[0]  # as before the handler's random.seed(1)
            assert socket.getdefaulttimeout() is None
            assert decimal.getcontext().prec == 28
            assert gc.isenabled()
            assert sys.getswitchinterval() == 0.005
            assert builtins.print.__module__ == "builtins"
            assert sys.displayhook is sys.__displayhook__
            if hasattr(sys, "get_int_max_str_digits"):
                assert sys.get_int_max_str_digits() == 4300
            assert resource.getrlimit(resource.RLIMIT_NOFILE) == NOFILE
            # pytest's own: one for the session (pytest 8+), or pytest 7's for this phase
            hook = sys.unraisablehook
            assert hook is HOOK or type(hook.__self__).__module__.startswith("_pytest.")
            assert sys.getprofile() is PROFILE
            assert threading.gettrace() is TRACE
            assert locale.setlocale(locale.LC_NUMERIC) == NUMERIC
            assert not hasattr(builtins, "ADDED_BY_THE_HANDLER")
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    text = result.stdout.str()
    for what in (
        "socket.setdefaulttimeout()",
        "the decimal context",
        "the garbage collector",
        "the thread switch interval",
        "int max str digits",
        "sys.unraisablehook, sys.displayhook or sys.breakpointhook",
        "builtins.print (replaced or deleted)",
        "builtins.ADDED_BY_THE_HANDLER (added)",
        "RLIMIT_NOFILE",
        "trace and profile functions",
        "the locale",
    ):
        assert what in text, what
    # Drawing random numbers is ordinary use: put back without a word.
    assert "random" not in text


def test_what_cannot_be_put_back_is_named_as_such(pytester):
    write_project(
        pytester,
        """
        import pytest

        @pytest.mark.lambda_handler("app.handler.handler")
        def test_faulthandler(lambda_function):
            lambda_function.invoke({"action": "disable faulthandler"})
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*Could not be put back: faulthandler (faulthandler.disable()).*"])


def test_atexit_callbacks_of_function_code_never_run(pytester):
    write_project(
        pytester,
        """
        import atexit
        import pytest

        @pytest.mark.lambda_handler("app.handler.handler")
        def test_register(lambda_function):
            assert lambda_function.invoke({"action": "atexit"}) == {"decorated": True}
            # The test's own still run at exit.
            atexit.register(print, "THE TEST'S ATEXIT RAN")
        """,
    )
    result = run(pytester, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*THE TEST'S ATEXIT RAN*"])
    assert "ATEXIT OF" not in result.stdout.str()
    assert "DECORATED ATEXIT RAN" not in result.stdout.str()


def test_a_listening_socket_of_function_code_ends_with_its_environment(pytester):
    write_project(
        pytester,
        """
        import socket
        import pytest

        PORT = []

        @pytest.mark.lambda_handler("app.handler.handler")
        def test_listen(lambda_function):
            PORT.append(lambda_function.invoke({"action": "listen"}))
            socket.create_connection(("127.0.0.1", PORT[0]), timeout=5).close()

        def test_later():
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", PORT[0]), timeout=5)
        """,
    )
    run(pytester).assert_outcomes(passed=2)


SHARED_CLIENT = {
    "shared/__init__.py": "",
    # A client memoized in a package outside the code root (as a layer's would be).
    "shared/client.py": """
        import os, socket

        _SOCK = None

        def ping():
            global _SOCK
            if _SOCK is None:
                _SOCK = socket.create_connection(("127.0.0.1", int(os.environ["ECHO_PORT"])))
                if os.environ.get("ECHO_TLS"):  # as an HTTPS or rediss:// client does
                    import ssl
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    _SOCK = context.wrap_socket(_SOCK)
            _SOCK.sendall(b"ping")
            return _SOCK.recv(16).decode()
    """,
    "app/fn.py": """
        import os, socket
        from shared import client

        OWN = []

        def handler(event, context):
            if event.get("own"):
                if not OWN:
                    sock = socket.create_connection(("127.0.0.1", int(os.environ["ECHO_PORT"])))
                    if os.environ.get("ECHO_TLS"):
                        import ssl
                        context = ssl.create_default_context()
                        context.check_hostname = False
                        context.verify_mode = ssl.CERT_NONE
                        sock = context.wrap_socket(sock)
                    OWN.append(sock)
                OWN[0].sendall(b"ping")
                return OWN[0].recv(16).decode()
            return client.ping()
    """,
}

SHARED_TESTS = """
    import os, socket, ssl, threading
    import pytest
    from pytest_lambda_context import SharedConnectionWarning

    TLS = os.environ.get("ECHO_TLS")

    @pytest.fixture
    def echo_port():
        server = socket.create_server(("127.0.0.1", 0))
        if TLS:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain("cert.pem", "key.pem")
            server = context.wrap_socket(server, server_side=True)
        def serve():
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=echo, args=(conn,), daemon=True).start()
        def echo(conn):
            with conn:
                while data := conn.recv(16):
                    conn.sendall(data)
        threading.Thread(target=serve, daemon=True).start()
        yield server.getsockname()[1]
        server.close()

    def make(make_lambda_function, port):
        tls = {"ECHO_TLS": "1"} if TLS else {}
        return make_lambda_function(
            "fn.handler", code_root="app", env={"ECHO_PORT": str(port), **tls}
        )

    def test_a_client_shared_by_environments_is_warned(make_lambda_function, echo_port):
        function = make(make_lambda_function, echo_port)
        assert function.cold_start().invoke({}) == "ping"
        with pytest.warns(SharedConnectionWarning) as seen:
            assert function.cold_start().invoke({}) == "ping"
            function.cold_start().invoke({})
        assert len(seen) == 1
        message = str(seen[0].message)
        assert "function code of fn (env-2) sent on a connection to 127.0.0.1:" in message
        assert "that fn (env-1) opened" in message
        assert "kept in module 'shared.client'" in message
        assert "fresh_packages" in message and "isolation='process'" in message

    def test_each_environments_own_client_is_not_warned(make_lambda_function, echo_port):
        function = make(make_lambda_function, echo_port)
        for _ in range(3):
            assert function.cold_start().invoke({"own": True}) == "ping"
        assert function.invoke({"own": True}) == "ping"
"""


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_connection_opened_by_one_environment_and_used_by_another(pytester, monkeypatch, tls):
    for name, text in SHARED_CLIENT.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    pytester.makepyfile(test_session=textwrap.dedent(SHARED_TESTS))
    if tls:
        if shutil.which("openssl") is None:
            pytest.skip("the TLS case needs the openssl command for a self-signed certificate")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem"],
            cwd=pytester.path, check=True, capture_output=True,
        )  # fmt: skip
        monkeypatch.setenv("ECHO_TLS", "1")
    result = run(pytester, "-W", "error::pytest_lambda_context.SharedConnectionWarning")
    result.assert_outcomes(passed=2)


def assert_botocore_put_back(result: pytest.RunResult) -> None:
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*IsolationLeakWarning*",
            "*Put back when the environment shut down: "
            "botocore.client.BaseClient._make_api_call (replaced by function code*",
        ]
    )


FIRE_AND_FORGET_TESTS = """
    import socket, threading
    import pytest

    @pytest.fixture
    def sink(tcp_proxy):
        server = socket.create_server(("127.0.0.1", 0))
        def drain(conn):
            with conn:
                while conn.recv(65536):
                    pass
        def serve():
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=drain, args=(conn,), daemon=True).start()
        threading.Thread(target=serve, daemon=True).start()
        yield tcp_proxy(*server.getsockname(), name="sink")
        server.close()

    def test_sends_read_by_the_proxy_after_their_phase_are_not_sharing(
        make_lambda_function, sink
    ):
        function = make_lambda_function(
            "sender.handler", code_root="app", env={"SINK": "{proxy:sink}"}
        )
        first, second = function.cold_start(), function.cold_start()
        for _ in range(40):
            assert first.invoke({}) == second.invoke({}) == "sent"
        assert sink.connections.opened == 2
    """


def test_bytes_a_proxy_relays_after_their_environments_call_are_not_sharing(pytester):
    # Sent without waiting for an answer: the proxy may read them while the next
    # environment runs; they are still the sender's.
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "sender.py").write_text(
        textwrap.dedent(
            """
            import os, socket

            SOCK = []

            def handler(event, context):
                if not SOCK:
                    host, port = os.environ["SINK"].split(":")
                    SOCK.append(socket.create_connection((host, int(port))))
                SOCK[0].sendall(b"x" * 32768)
                return "sent"
            """
        )
    )
    pytester.makepyfile(test_session=textwrap.dedent(FIRE_AND_FORGET_TESTS))
    result = run(pytester, "-W", "error::pytest_lambda_context.SharedConnectionWarning")
    result.assert_outcomes(passed=1)


def test_a_library_patched_by_init_code_is_put_back_and_named(pytester):
    pytest.importorskip("aws_xray_sdk")
    (pytester.path / "traced.py").write_text(
        textwrap.dedent(
            """
            from aws_xray_sdk.core import patch, xray_recorder

            xray_recorder.configure(context_missing="IGNORE_ERROR", sampling=False)
            patch(["botocore"])  # as patch_all() does, for botocore

            def handler(event, context):
                return "traced"
            """
        )
    )
    pytester.makepyfile(
        test_session="""
        import botocore.client
        import pytest

        ORIGINAL = botocore.client.BaseClient.__dict__["_make_api_call"]

        @pytest.mark.lambda_handler("traced.handler")
        def test_traced(lambda_function):
            assert lambda_function.invoke({}) == "traced"
            # While the environment lives, the test sees its patch (one process).
            assert botocore.client.BaseClient.__dict__["_make_api_call"] is not ORIGINAL

        def test_later():
            assert botocore.client.BaseClient.__dict__["_make_api_call"] is ORIGINAL
        """
    )
    assert_botocore_put_back(run(pytester))


LAZY_TRACED = """
from aws_xray_sdk.core import patch, xray_recorder

xray_recorder.configure(context_missing="IGNORE_ERROR", sampling=False)
patched = []

def handler(event, context):
    if not patched:  # set up lazily, in the first invocation
        patch(["botocore"])
        patched.append(True)
    return "traced"
"""

FRESH_TRACED = """
import botocore.client  # first imported here, by init code
from aws_xray_sdk.core import patch, xray_recorder

xray_recorder.configure(context_missing="IGNORE_ERROR", sampling=False)
patch(["botocore"])

def handler(event, context):
    return "traced"
"""


FRESH_OWN_PATCH = """
import functools
import botocore.client  # first imported here, by init code

_original = botocore.client.BaseClient._make_api_call

@functools.wraps(_original)
def _traced(self, *args, **kwargs):  # the function's own patch, as a tracer's would be
    return _original(self, *args, **kwargs)

botocore.client.BaseClient._make_api_call = _traced

def handler(event, context):
    return "traced"
"""


@pytest.mark.parametrize(
    ("code", "imported_by_test"),
    [(LAZY_TRACED, True), (FRESH_TRACED, False), (FRESH_OWN_PATCH, False)],
    ids=[
        "patched-in-the-first-invocation",
        "imported-and-patched-by-init",
        "imported-and-patched-by-its-own-code",
    ],
)
def test_a_library_patched_lazily_or_first_imported_by_function_code_is_put_back(
    pytester, code, imported_by_test
):
    pytest.importorskip("aws_xray_sdk")
    (pytester.path / "traced.py").write_text(textwrap.dedent(code))
    pytester.makepyfile(
        test_session=f"""
        import sys
        import types
        import pytest

        IMPORTED_BY_TEST = {imported_by_test!r}
        if IMPORTED_BY_TEST:
            import botocore.client

        def patched(method):
            if type(method) is not types.FunctionType:
                return True  # wrapt's wrapper, as X-Ray patches
            return "botocore" not in method.__code__.co_filename

        @pytest.mark.lambda_handler("traced.handler")
        def test_traced(lambda_function):
            assert ("botocore.client" in sys.modules) is IMPORTED_BY_TEST
            assert lambda_function.invoke({{}}) == "traced"
            assert lambda_function.invoke({{}}) == "traced"
            method = sys.modules["botocore.client"].BaseClient.__dict__["_make_api_call"]
            assert patched(method)  # the test sees the patch meanwhile (one process)

        def test_later():
            import botocore.client

            method = botocore.client.BaseClient.__dict__["_make_api_call"]
            assert not patched(method), method
        """
    )
    assert_botocore_put_back(run(pytester))


def test_a_librarys_own_decorated_methods_are_not_taken_for_patches():
    import functools
    import http.client

    from pytest_lambda_context.environments.leaks import wrapped_original

    original = http.client.HTTPConnection.request

    def plain(*args):
        return args

    # A wrapper written elsewhere around the library's function is a patch ...
    patch = functools.wraps(original)(lambda *args: args)
    assert wrapped_original(patch, "http.client") is original
    # ... one written in the library's own files is its own decorated method.
    namespace: dict[str, object] = {}
    exec(compile("def own(*args):\n    return args\n", http.client.__file__, "exec"), namespace)
    own = functools.wraps(original)(namespace["own"])
    assert wrapped_original(own, "http.client") is None
    assert wrapped_original(plain, "http.client") is None
    assert wrapped_original(patch, "json") is None  # it wraps another module's function
    # A library's function defined in a submodule or its C accelerator is still its own.
    import sqlite3

    connect = functools.wraps(sqlite3.connect)(lambda *args: args)  # _sqlite3's
    assert wrapped_original(connect, "sqlite3") is sqlite3.connect
    httpx = pytest.importorskip("httpx")
    send = functools.wraps(httpx.Client.send)(lambda *args: args)  # httpx._client's
    assert wrapped_original(send, "httpx") is httpx.Client.send
    # Its own methods made with the standard library's decorators are not patches.
    assert wrapped_original(vars(httpx.Client)["stream"], "httpx") is None  # contextmanager


def test_a_thread_of_function_code_that_invokes_while_its_handler_waits(pytester):
    (pytester.path / "waiter.py").write_text(
        textwrap.dedent(
            """
            import threading

            OTHER = []  # set by the test: another function

            def handler(event, context):
                box = []

                def call():
                    try:
                        box.append(OTHER[0].invoke({}))
                    except RuntimeError as exc:
                        box.append(str(exc))

                thread = threading.Thread(target=call)
                thread.start()
                thread.join()  # the classic fan-out, waiting for its thread
                return box[0]

            def other(event, context):
                return "other"
            """
        )
    )
    pytester.makepyfile(
        test_session="""
        from pytest_lambda_context import LambdaFunction

        def test_fan_out():
            with LambdaFunction("waiter.other", code_root=".", timeout=1) as other, \
                    LambdaFunction("waiter.handler", code_root=".", timeout=5) as waiter:
                environment = waiter.cold_start()
                environment.init()
                environment.module.OTHER.append(other)
                message = environment.invoke({})
            assert "invoked from a thread that function code started" in message
            assert "isolation='process'" in message
        """
    )
    run(pytester).assert_outcomes(passed=1)
