"""Lambda's shutdown phase: killed without extensions, SIGTERM and a grace period with them.

A real SIGTERM handler closes a real PostgreSQL connection (psycopg, libpq) that goes
through a counting proxy: the server sees it end only when the handler ran.
"""

from __future__ import annotations

import textwrap

import pytest

HANDLER = """
    import atexit
    import os
    import signal
    import time

    import psycopg

    connection = psycopg.connect(os.environ["DATABASE_URL"])


    def close_on_sigterm(signum, frame):
        connection.close()
        with open(os.environ["MARKS"], "a") as marks:
            marks.write("sigterm\\n")


    def at_exit():
        with open(os.environ["MARKS"], "a") as marks:
            marks.write("atexit\\n")


    signal.signal(signal.SIGTERM, close_on_sigterm)
    atexit.register(at_exit)


    def handler(event, context):
        if event.get("sleep"):
            time.sleep(event["sleep"])
        with connection.cursor() as cursor:
            cursor.execute("select 1")
            return cursor.fetchone()[0]
"""

TESTS = """
    import pytest

    from pytest_lambda_context import InvocationTimeout
    from support_wait import wait_for

    URL = "{url}"


    def make(make_lambda_function, tcp_proxy, marks, **options):
        host, port = URL.rpartition("@")[2].partition("/")[0].split(":")
        proxy = tcp_proxy(host, int(port), name="pg")
        user_at = URL.partition("//")[2].partition("@")[0]
        database = URL.rpartition("/")[2]
        marks.write_text("")
        function = make_lambda_function(
            "app.db.handler",
            env={{
                "DATABASE_URL": f"postgresql://{{user_at}}@{{{{proxy:pg}}}}/{{database}}",
                "MARKS": str(marks),
            }},
            **options,
        )
        return function, proxy


    @pytest.mark.parametrize("extensions", [None, "internal", "external"])
    def test_shutdown(make_lambda_function, tcp_proxy, tmp_path, extensions):
        marks = tmp_path / "marks"
        function, proxy = make(make_lambda_function, tcp_proxy, marks, extensions=extensions)
        assert function.invoke({{}}) == 1
        assert proxy.open_now == 1
        environment = function.environments[0]
        function.close()
        if extensions is None:
            # Killed: no handler ran, and the server never heard of the end.
            assert environment.sigterm_handled is False
            assert proxy.lingering == 1 and proxy.open_now == 1
            assert "sigterm" not in marks.read_text()
        else:
            assert environment.sigterm_handled is True
            assert wait_for(lambda: proxy.open_now == 0)
            assert proxy.lingering == 0
            assert "sigterm" in marks.read_text()
        # atexit callbacks of function code never run.
        assert "atexit" not in marks.read_text()


    # Module isolation closes a C driver's connection when it is garbage (the timed-out
    # call's traceback keeps it alive for now): process isolation only.
    @pytest.mark.skipif("{isolation}" == "module", reason="process isolation")
    @pytest.mark.parametrize("extensions", [None, "external"])
    def test_a_timeout_ends_the_runtime_inside_a_live_environment(
        make_lambda_function, tcp_proxy, tmp_path, extensions
    ):
        marks = tmp_path / "marks"
        function, proxy = make(
            make_lambda_function, tcp_proxy, marks, extensions=extensions, timeout=1
        )
        assert function.invoke({{}}) == 1
        with pytest.raises(InvocationTimeout):
            function.invoke({{"sleep": 30}})
        # The runtime's process ended: its connection closed, no grace, no handler.
        assert wait_for(lambda: proxy.open_now == 0)
        assert proxy.lingering == 0
        assert function.environments[0].sigterm_handled is False
        assert "sigterm" not in marks.read_text()
"""


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_sigterm_handler_closes_its_connection_only_with_extensions(
    pytester: pytest.Pytester, postgres_url: str, isolation: str
) -> None:
    pytest.importorskip("psycopg")
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "__init__.py").write_text("")
    (pytester.path / "app" / "db.py").write_text(textwrap.dedent(HANDLER))
    (pytester.path / "support_wait.py").write_text(
        textwrap.dedent(
            """
            import time

            def wait_for(condition, timeout=10.0):
                until = time.monotonic() + timeout
                while time.monotonic() < until:
                    if condition():
                        return True
                    time.sleep(0.005)
                return bool(condition())
            """
        )
    )
    pytester.makepyfile(
        test_it=textwrap.dedent(TESTS.format(url=postgres_url, isolation=isolation))
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--lambda-isolation={isolation}"
    )
    if isolation == "process":
        result.assert_outcomes(passed=5)
    else:
        result.assert_outcomes(passed=3, skipped=2)
