"""Placeholders in env values: {es_url}, {proxy:NAME}; unknown ones are errors that
name them, the known ones and the nearest; anything else in braces is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.environments.placeholders import check_placeholders, fill_placeholders

SUPPLIERS = {"es_url": lambda: "http://127.0.0.1:9200", "proxy:pg": lambda: "127.0.0.1:6543"}


def test_known_placeholders_are_filled_and_the_rest_is_left_exactly_as_written() -> None:
    env = {
        "ES_URL": "{es_url}",
        "DSN": "postgresql://app@{proxy:pg}/orders?x={es_url}",
        "JSON": '{"retries": {"max": 3}}',
        "LOG_FORMAT": "{{levelname}} {{message}}",
        "EMPTY": "{}",
    }
    assert fill_placeholders(env, SUPPLIERS) == {
        "ES_URL": "http://127.0.0.1:9200",
        "DSN": "postgresql://app@127.0.0.1:6543/orders?x=http://127.0.0.1:9200",
        "JSON": '{"retries": {"max": 3}}',
        "LOG_FORMAT": "{levelname} {message}",
        "EMPTY": "{}",
    }


def test_a_misspelt_placeholder_names_itself_the_known_ones_and_the_nearest() -> None:
    with pytest.raises(ValueError) as info:
        check_placeholders({"ES_URL": "{es_ulr}"}, SUPPLIERS)
    message = str(info.value)
    assert message.startswith("env['ES_URL'] = '{es_ulr}' uses {es_ulr}, an unknown placeholder")
    assert "did you mean {es_url}?" in message
    assert "known ones are {es_url}, {proxy:pg}" in message
    assert "write {{es_ulr}} for the literal text {es_ulr}" in message


def test_an_unknown_proxy_name_is_an_error_when_filled() -> None:
    check_placeholders({"DSN": "{proxy:pgg}"}, SUPPLIERS)  # the proxy may come later
    with pytest.raises(ValueError, match=r"no tcp_proxy named 'pgg': did you mean \{proxy:pg\}\?"):
        fill_placeholders({"DSN": "{proxy:pgg}"}, SUPPLIERS)


def test_lambda_function_checks_placeholders_when_made(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"uses \{databse_url\}, an unknown placeholder"):
        LambdaFunction("app.handler", env={"URL": "{databse_url}"}, code_root=tmp_path)


def test_tcp_proxy_names_reach_env_values(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        app="""
        import os

        def handler(event, context):
            return os.environ["TARGET"]
        """,
        test_names="""
        import socket
        import pytest

        @pytest.fixture
        def server():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                s.listen()
                yield s.getsockname()

        def test_a_proxy_made_after_the_function(make_lambda_function, tcp_proxy, server):
            function = make_lambda_function("app.handler", env={"TARGET": "tcp://{proxy:db}"})
            proxy = tcp_proxy(*server, name="db")
            assert function.invoke({}) == f"tcp://127.0.0.1:{proxy.port}"
            assert proxy.name == "db" and proxy.connections.opened == 0

        def test_a_missing_proxy(make_lambda_function, tcp_proxy, server):
            tcp_proxy(*server, name="db")
            function = make_lambda_function("app.handler", env={"TARGET": "{proxy:bd}"})
            with pytest.raises(ValueError, match="no tcp_proxy named 'bd'"):
                function.invoke({})

        def test_names_are_checked(tcp_proxy, server):
            tcp_proxy(*server, name="db")
            with pytest.raises(ValueError, match="already has a proxy of that name"):
                tcp_proxy(*server, name="db")
            with pytest.raises(ValueError, match="without spaces or braces"):
                tcp_proxy(*server, name="my db")
            with pytest.raises(ValueError, match="port must be an integer 1-65535"):
                tcp_proxy(server[0], 0)
        """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
