"""A project whose report has every kind of bar a real run makes: cold (with a
connection to a loopback listener), warm, error, timeout, throttled, a pause, two at once."""

from __future__ import annotations

import pytest

HANDLER = """
import socket, os, time

def handler(event, context):
    if event.get("connect"):
        socket.create_connection(("127.0.0.1", int(os.environ["PORT"]))).close()
    if event.get("fail"):
        raise KeyError(event["fail"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return "ok"
"""

# A loopback listener for the handler to connect to (the kernel accepts for it).
CONFTEST = """
import socket
import pytest

@pytest.fixture(scope="session")
def port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server.getsockname()[1]
    server.close()
"""

TESTS = """
import pytest

def test_every_kind(make_lambda_function, port):
    f = make_lambda_function("app.main.handler", timeout=0.3, env={"PORT": str(port)})
    f.invoke({"connect": True})
    f.invoke({})
    with pytest.raises(Exception):
        f.invoke({"fail": "x"})
    with pytest.raises(Exception):
        f.invoke({"sleep": 2})
    f.invoke({})
    f.idle(minutes=5)
    f.invoke_many([{}] * 4, concurrency=2)

@pytest.mark.lambda_handler("app.main.handler")
def test_made_but_never_invoked(lambda_function):
    pass

def test_throttled(make_lambda_function):
    from pytest_lambda_context import TooManyRequestsError

    f = make_lambda_function("app.main.handler", function_name="limited", max_concurrency=1)
    with pytest.raises(TooManyRequestsError):
        f.invoke_many([{}] * 3, concurrency=2)

@pytest.mark.lambda_handler("app.main.handler", function_name="second")
@pytest.mark.parametrize("name", ["</script><b>bold</b>"])
def test_hostile_name(lambda_function, name):
    lambda_function.invoke({})
"""


def write_kinds_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**{"app/__init__": "", "app/main": HANDLER})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_kinds=TESTS)
    return pytester
