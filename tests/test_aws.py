"""The aws fixture, boto3 client accounting and the loopback guard: real boto3 against moto.

Most tests run a pytester project with real handler files in both isolations: module
(moto in-process) and process (workers pointed at the session's moto server).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support import open_fd_targets, write_project

from pytest_lambda_context import HandlerError
from pytest_lambda_context.observe import clients, connections
from pytest_lambda_context.observe.clients import ClientEvent, MotoNotImplementedError
from pytest_lambda_context.observe.guard import BlockedLookupError, NetworkBlockedError
from pytest_lambda_context.observe.scope import Scope, set_scope

pytest_plugins = ["pytester"]

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")
# pytester's in-process runs drop the modules each inner session imported; a second
# copy of flask (under moto's server) would not see the first one's request context.
# Loaded here, they stay shared, as they would be in a real session.
pytest.importorskip("moto.moto_server.werkzeug_app")


def _load_moto_backends() -> None:
    """moto loads a service's backend at its first call (0.3 s for DynamoDB), inside the
    handler's time; in-process pytester runs drop those modules again after each inner
    session. Loaded once here, they stay: no inner test pays for them under its 3 s
    Lambda timeout on a loaded CI machine."""
    from moto import mock_aws

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AWS_")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    try:
        with mock_aws():
            for service, call in [
                ("dynamodb", "list_tables"),
                ("s3", "list_buckets"),
                ("sts", "get_caller_identity"),
            ]:
                getattr(boto3.client(service, region_name="us-east-1"), call)()
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(saved)


_load_moto_backends()
# Likewise the plugin's own lazily imported modules: the inner tests' HandlerError must be
# the class the plugin raises.
assert HandlerError.__module__ == "pytest_lambda_context.runtime.errors"

ISOLATIONS = ["module", "process"]

HANDLERS = {
    "app/__init__.py": "",
    # The pattern to follow: clients built once per execution environment.
    "app/store.py": """
        import os

        import boto3

        TABLE = os.environ.get("TABLE", "items")
        dynamodb = boto3.client("dynamodb")
        s3 = boto3.resource("s3")


        def handler(event, context):
            if event.get("setup"):
                dynamodb.create_table(
                    TableName=TABLE,
                    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
                s3.create_bucket(Bucket="bucket-a")
                return "ready"
            dynamodb.put_item(TableName=TABLE, Item={"id": {"S": event["id"]}})
            s3.Object("bucket-a", event["id"]).put(Body=b"payload")
            return dynamodb.scan(TableName=TABLE)["Count"]
    """,
    # Memoized in a getter: created during the first invocation, then reused.
    "app/cached.py": """
        import functools

        import boto3


        @functools.cache
        def get_s3():
            return boto3.client("s3")


        def handler(event, context):
            return len(get_s3().list_buckets()["Buckets"])
    """,
    # The anti-pattern: new clients on every invocation.
    "app/per_call.py": """
        import boto3


        def handler(event, context):
            dynamodb = boto3.client("dynamodb")
            s3 = boto3.client("s3")
            return len(dynamodb.list_tables()["TableNames"]) + len(s3.list_buckets()["Buckets"])
    """,
    "app/creds.py": """
        import os

        import boto3


        def handler(event, context):
            credentials = boto3.session.Session().get_credentials()
            return {
                "key": credentials.access_key,
                "visible": sorted(k for k in os.environ if k.startswith("AWS_") and
                                  not k.startswith("AWS_LAMBDA_")),
                "profile": os.environ.get("AWS_PROFILE"),
                "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
                "caller": boto3.client("sts").get_caller_identity()["Account"],
            }
    """,
    "app/outside.py": """
        import boto3


        def by_address(event, context):
            s3 = boto3.client("s3", endpoint_url="http://192.0.2.1:9000")  # TEST-NET-1
            return s3.list_buckets()


        def by_name(event, context):
            s3 = boto3.client("s3", endpoint_url="http://lambda-guard-test.invalid:9000")
            return s3.list_buckets()
    """,
    "app/missing.py": """
        import boto3


        def operation(event, context):
            return boto3.client("dynamodb").list_contributor_insights()


        def service(event, context):
            return boto3.client("chime").list_accounts()
    """,
}


def aws_project(pytester: pytest.Pytester, isolation: str, ini: str = "", **tests: str) -> None:
    # No blank first line in the handler files: the line numbers tests expect.
    write_project(
        pytester,
        {name: text.lstrip("\n") for name, text in HANDLERS.items()},
        ini=f"[pytest]\nfilterwarnings = error\nlambda_isolation = {isolation}\n{ini}",
        **tests,
    )


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", *args)


# --- with pytester: the fixture as users run it -------------------------------------------


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_memoized_clients_are_mocked_and_counted_once(pytester, isolation):
    aws_project(
        pytester,
        isolation,
        test_store="""
        import boto3
        import pytest

        @pytest.mark.max_clients(1, per="environment", service="dynamodb")
        @pytest.mark.max_clients(2, per="environment")
        @pytest.mark.lambda_handler("app.store.handler")
        def test_store(lambda_function, aws):
            assert lambda_function.invoke({"setup": True}) == "ready"
            assert [lambda_function.invoke({"id": str(n)}) for n in range(3)] == [1, 2, 3]
            assert aws.clients_created() == 2
            assert aws.clients_created("dynamodb") == aws.clients_created("s3") == 1
            assert aws.clients_created("sqs") == 0
            (env,) = lambda_function.environments
            assert sorted(c.service for c in env.clients) == ["dynamodb", "s3"]
            assert {c.frame for c in env.clients} == {
                "app/store.py:6 in <module>", "app/store.py:7 in <module>"
            }
            # Built at import: the init phase's, not an invocation's.
            assert [c.request_id for c in env.clients] == [None, None]
            assert [i.clients_created for i in lambda_function.invocations] == [0, 0, 0, 0]
            # The test's own clients see what the handler wrote (and are not counted).
            keys = boto3.client("s3").list_objects_v2(Bucket="bucket-a")["KeyCount"]
            assert keys == 3
            assert boto3.client("dynamodb").scan(TableName="items")["Count"] == 3
            assert aws.clients_created() == 2

        @pytest.mark.lambda_handler("app.cached.handler")
        def test_getter(lambda_function, aws):
            boto3.client("s3").create_bucket(Bucket="made-by-the-test")
            assert lambda_function.invoke({}) == 1
            assert lambda_function.invoke({}) == 1
            assert [i.clients_created for i in lambda_function.invocations] == [1, 0]
            (event,) = aws.clients
            assert event.frame == "app/cached.py:8 in get_s3"
            assert event.request_id == lambda_function.invocations[0].request_id
        """,
    )
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*boto3 clients per environment: 2 in 1 environment",
            "*boto3 clients per environment: 1 in 1 environment",
        ]
    )


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_per_invocation_clients_fail_max_clients_with_a_precise_message(pytester, isolation):
    aws_project(
        pytester,
        isolation,
        test_limits="""
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.per_call.handler")

        @pytest.mark.max_clients(1)
        def test_per_environment(lambda_function, aws):
            lambda_function.invoke({})
            lambda_function.invoke({})

        @pytest.mark.max_clients(1, per="invocation", service="s3")
        def test_per_invocation_one_service(lambda_function, aws):
            lambda_function.invoke({})
            lambda_function.invoke({})

        @pytest.mark.max_clients(3, per="test")
        def test_whole_test(lambda_function, aws):
            lambda_function.invoke_many([{}] * 2, concurrency=2)
            assert aws.clients_created() == 4

        def test_counts_without_a_marker(lambda_function, aws):
            for _ in range(3):
                lambda_function.invoke({})
            assert aws.clients_created() == 6
            assert [i.clients_created for i in lambda_function.invocations] == [2, 2, 2]
        """,
    )
    result = run(pytester, "-rA")
    # One s3 client per invocation is within per="invocation", service="s3".
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["PASSED test_limits.py::test_per_invocation_one_service"])
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.max_clients(1) exceeded by function app-per_call (app.per_call.handler):",
            "*  env-1 created 4 clients (limit 1):",
            "*    - env-1 invocation 1 (*): dynamodb client created at app/per_call.py:5 in handler",
            "*    - env-1 invocation 1 (*): s3 client created at app/per_call.py:6 in handler",
            "*    - env-1 invocation 2 (*): dynamodb client created at app/per_call.py:5 in handler",
            "*    - env-1 invocation 2 (*): s3 client created at app/per_call.py:6 in handler",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.max_clients(3, per='test') exceeded by function app-per_call*",
            "*  the test created 4 clients (limit 3):",
        ]
    )
    # invoke_many ran the two environments at once (in parallel in process isolation).
    text = result.stdout.str()
    for env_id in ("env-1", "env-2"):
        for service, line in (("dynamodb", 5), ("s3", 6)):
            pattern = rf"- {env_id} invocation \d \(.*\): {service} client created at app/per_call.py:{line} in handler"
            assert re.search(pattern, text), pattern


def test_max_clients_per_invocation_and_service(pytester):
    aws_project(
        pytester,
        "module",
        test_limits="""
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.per_call.handler")

        @pytest.mark.max_clients(1, per="invocation", service="s3")
        def test_within(lambda_function, aws):
            lambda_function.invoke({})
            lambda_function.invoke({})

        @pytest.mark.max_clients(0, per="invocation", service="dynamodb")
        def test_over(lambda_function, aws):
            lambda_function.invoke({})
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.max_clients(0, per='invocation', service='dynamodb') exceeded*",
            "*  env-1 invocation 1 (*) created 1 client of service dynamodb (limit 0):",
            "*    - env-1 invocation 1 (*): dynamodb client created at app/per_call.py:5 in handler",
        ]
    )


def test_max_clients_counts_without_the_aws_fixture_too(pytester):
    """No silent pass: clients are counted for every function, the fixture or not."""
    pytester.path.joinpath("app").mkdir()
    pytester.path.joinpath("app/__init__.py").write_text("")
    pytester.path.joinpath("app/lazy.py").write_text(
        "import boto3\n\ndef handler(event, context):\n    boto3.client('s3')\n    return 1\n"
    )
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.max_clients(0)
        @pytest.mark.lambda_handler("app.lazy.handler")
        def test_it(lambda_function):
            lambda_function.invoke({})
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*s3 client created at app/lazy.py:4 in handler"])


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_real_credentials_are_hidden_and_restored_even_after_a_failure(
    pytester, isolation, monkeypatch
):
    real = {
        "AWS_PROFILE": "production",
        "AWS_ACCESS_KEY_ID": "AKIAREALREALREALREAL",
        "AWS_SECRET_ACCESS_KEY": "real-secret",
        "AWS_SESSION_TOKEN": "real-token",
        "AWS_SHARED_CREDENTIALS_FILE": "/home/someone/.aws/credentials",
        "AWS_CONFIG_FILE": "/home/someone/.aws/config",
        "AWS_ENDPOINT_URL_S3": "https://s3.example.com",
    }
    for key, value in real.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    aws_project(
        pytester,
        isolation,
        test_creds=f"""
        import os
        import pytest

        REAL = {real!r}

        @pytest.mark.lambda_handler("app.creds.handler")
        def test_fake_inside(lambda_function, aws):
            seen = lambda_function.invoke({{}})
            assert seen["key"] == "testing"
            assert seen["profile"] is None
            assert seen["caller"] == "123456789012"  # moto's account
            assert "AWS_ENDPOINT_URL_S3" not in seen["visible"]
            assert seen["endpoint"] == aws.endpoint_url
            if {isolation!r} == "process":
                assert aws.endpoint_url.startswith("http://127.0.0.1:")
            assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
            assert os.environ["AWS_DEFAULT_REGION"] == aws.region == "us-east-1"
            assert "AWS_PROFILE" not in os.environ

        def test_fails_with_the_fixture(aws):
            assert False, "on purpose"

        def test_restored_after(make_lambda_function):
            for key, value in REAL.items():
                assert os.environ[key] == value
            assert "AWS_DEFAULT_REGION" not in os.environ
            assert "AWS_SECURITY_TOKEN" not in os.environ
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    for key, value in real.items():
        assert os.environ[key] == value


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(
    "arguments",
    [
        "lambda_function, aws",
        "aws, lambda_function",
        "lambda_env, aws",
        "make_lambda_function, aws",
    ],
)
def test_moto_is_active_before_any_cold_start_whatever_the_argument_order(
    pytester, isolation, arguments
):
    aws_project(
        pytester,
        isolation,
        test_order=f"""
        import pytest

        @pytest.mark.lambda_handler("app.store.handler")
        def test_order({arguments}):
            if "make_lambda_function" in {arguments!r}:
                function = make_lambda_function("app.store.handler")
            elif "lambda_env" in {arguments!r}:
                function = lambda_env
            else:
                function = lambda_function
            assert function.invoke({{"setup": True}}) == "ready"
            assert function.invoke({{"id": "a"}}) == 1
        """,
    )
    run(pytester).assert_outcomes(passed=1)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_the_guard_refuses_non_loopback_endpoints_and_names_at_once(pytester, isolation):
    aws_project(
        pytester,
        isolation,
        test_guard="""
        import pytest
        from pytest_lambda_context import HandlerError

        def test_address(make_lambda_function, aws):
            function = make_lambda_function("app.outside.by_address")
            with pytest.raises(HandlerError) as info:
                function.invoke({})
            assert info.value.error_type == "NetworkBlockedError"
            message = info.value.error_message
            assert "192.0.2.1:9000" in message
            assert "from app/outside.py:6 in by_address" in message
            assert "lambda_network = loopback" in message
            assert function.connections.opened() == 0

        def test_name(make_lambda_function, aws):
            function = make_lambda_function("app.outside.by_name")
            with pytest.raises(HandlerError) as info:
                function.invoke({})
            assert info.value.error_type == "BlockedLookupError"
            message = info.value.error_message
            assert "tried to look up 'lambda-guard-test.invalid'" in message
            assert "from app/outside.py:11 in by_name" in message
        """,
    )
    run(pytester).assert_outcomes(passed=2)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_operation_moto_lacks_names_the_service_and_operation(pytester, isolation):
    aws_project(
        pytester,
        isolation,
        test_missing="""
        import pytest
        from pytest_lambda_context import HandlerError

        @pytest.mark.parametrize("handler, service, operation", [
            ("app.missing.operation", "dynamodb", "ListContributorInsights"),
            ("app.missing.service", "chime", "ListAccounts"),
        ])
        def test_missing(make_lambda_function, aws, handler, service, operation):
            function = make_lambda_function(handler)
            with pytest.raises(HandlerError) as info:
                function.invoke({})
            assert info.value.error_type == "MotoNotImplementedError"
            message = info.value.error_message
            assert f"does not implement the {service} operation {operation}" in message
            assert "botocore.stub.Stubber" in message
        """,
    )
    run(pytester).assert_outcomes(passed=2)


def test_process_isolation_starts_one_moto_server_and_resets_it_per_test(pytester):
    aws_project(
        pytester,
        "process",
        test_server="""
        import boto3
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.cached.handler")
        URLS = []

        def test_one(lambda_function, aws):
            boto3.client("s3").create_bucket(Bucket="only-in-test-one")
            assert lambda_function.invoke({}) == 1
            URLS.append(aws.endpoint_url)
            # One keep-alive connection per environment, as with real AWS.
            assert lambda_function.invoke({}) == 1
            assert lambda_function.connections.per_environment() == {"env-1": 1}
            assert lambda_function.connections.events[0].host == "127.0.0.1"

        def test_two(lambda_function, aws):
            assert lambda_function.invoke({}) == 0
            URLS.append(aws.endpoint_url)
            assert URLS[0] == URLS[1] and URLS[0].startswith("http://127.0.0.1:")

        def test_module_isolation_in_the_same_session(make_lambda_function, aws):
            function = make_lambda_function("app.cached.handler", isolation="module")
            assert function.invoke({}) == 0
            assert function.connections.opened() == 0  # in-process moto: no sockets
        """,
    )
    run(pytester).assert_outcomes(passed=3)


def test_a_client_built_at_collection_is_refused_with_the_reason(pytester, monkeypatch):
    """Imported at the top of the test file, app.store builds its clients during
    collection: before moto is loaded, and holding whatever credentials were set then."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALREALREALREAL")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws_project(
        pytester,
        "module",
        test_direct="""
        import pytest
        from app.store import handler

        def test_direct_call(aws, lambda_context):
            handler({"id": "x"}, lambda_context)

        def test_through_the_function_it_is_mocked(make_lambda_function, aws):
            function = make_lambda_function("app.store.handler")
            assert function.invoke({"setup": True}) == "ready"
        """,
    )
    # A process of its own: in this one moto is loaded already, so the client would be mocked.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*UnmockedAwsCallError: a boto3/botocore client in the test process tried to reach "
            "https://dynamodb.us-east-1.amazonaws.com/ while the aws fixture is active*"
            "make_lambda_function*"
        ]
    )


def test_moto_not_installed_says_which_extra(pytester):
    aws_project(pytester, "module")
    pytester.makeconftest("import sys\nsys.modules['moto'] = None\n")
    pytester.makepyfile(
        test_it="""
        def test_it(aws):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ['*the aws fixture needs moto and boto3 (*): pip install "pytest-lambda-context[[]aws]"']
    )


def test_moto_server_missing_says_which_extra(pytester, monkeypatch):
    from pytest_lambda_context.services import aws

    monkeypatch.setattr(aws, "_server_class_cache", [])  # as in a session's first use
    aws_project(pytester, "process")
    pytester.makeconftest(
        "import sys\n"
        "sys.modules['moto.moto_server.threaded_moto_server'] = None\n"
        "sys.modules['moto.moto_server.werkzeug_app'] = None\n"
    )
    pytester.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.lambda_handler("app.cached.handler")
        def test_it(lambda_function, aws):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*isolation='process' under the aws fixture runs moto's server, which needs "
            'moto?server? (*): pip install "pytest-lambda-context[[]aws]"'
        ]
    )


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_json_report_lists_each_environments_clients(pytester, isolation):
    aws_project(
        pytester,
        isolation,
        ini="lambda_report = report.json\n",
        test_report="""
        import pytest

        @pytest.mark.lambda_handler("app.per_call.handler")
        def test_it(lambda_function, aws):
            lambda_function.invoke({})
        """,
    )
    run(pytester).assert_outcomes(passed=1)
    report = json.loads((pytester.path / "report.json").read_text())
    (function,) = report["functions"]
    (environment,) = function["environments"]
    services = [(c["service"], c["frame"]) for c in environment["clients"]]
    assert services == [
        ("dynamodb", "app/per_call.py:5 in handler"),
        ("s3", "app/per_call.py:6 in handler"),
    ]
    assert environment["invocations"][0]["clients_created"] == 2


# --- without pytester: the pieces -------------------------------------------------------


@pytest.fixture
def function_scope(tmp_path: Any) -> Iterator[Scope]:
    """Function code is running (network = loopback), with both monitors installed."""
    connections.install()
    clients.install()
    scope = Scope("fn", "env-1", "req-1", str(tmp_path) + os.sep, [], "loopback")
    previous = set_scope(scope)
    try:
        yield scope
    finally:
        set_scope(previous)
        clients.uninstall()
        connections.uninstall()


def test_the_guard_refuses_before_any_connect_or_lookup(function_scope, monkeypatch):
    connects: list[Any] = []
    lookups: list[Any] = []
    real_getaddrinfo = connections._original_getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(connections, "_original_connect", lambda *a: connects.append(a))
    monkeypatch.setattr(connections, "_original_connect_ex", lambda *a: connects.append(a))
    monkeypatch.setattr(connections, "_original_getaddrinfo", getaddrinfo)
    session = boto3.session.Session(region_name="us-east-1")
    for endpoint, error in [
        ("http://192.0.2.1:9000", NetworkBlockedError),
        ("http://lambda-guard-test.invalid:9000", BlockedLookupError),
    ]:
        client = session.client("s3", endpoint_url=endpoint)
        attempts = _count_attempts(client)
        with pytest.raises(error):
            client.list_buckets()
        assert attempts == [1]  # refused at the first attempt: no retries with back-off
    # The address literal is parsed (no DNS for it); the name is never looked up and
    # nothing is connected.
    assert connects == []
    assert set(lookups) <= {"192.0.2.1"}
    assert [e.service for e in function_scope.events] == ["s3", "s3"]


def _count_attempts(client: Any) -> list[int]:
    attempts = [0]

    def count(**_: Any) -> None:
        attempts[0] += 1

    client.meta.events.register("request-created", count)  # once per attempt
    return attempts


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from pytest_lambda_context.services.aws import _MotoServer

    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = _MotoServer()
    try:
        yield server.url
    finally:
        server.stop()


def test_moto_lacking_an_operation_is_one_attempt_and_a_named_error(moto_server, function_scope):
    from botocore import xform_name
    from moto import mock_aws

    session = boto3.session.Session(region_name="us-east-1")
    with mock_aws():
        for endpoint, service, operation, detail in [
            (None, "dynamodb", "ListContributorInsights", "has not been implemented"),
            (None, "chime", "ListAccounts", "no moto backend"),
            (moto_server, "dynamodb", "ListContributorInsights", "has not been implemented"),
            (moto_server, "chime", "ListAccounts", "no moto backend"),
        ]:
            client = session.client(service, endpoint_url=endpoint)
            attempts = _count_attempts(client)
            call = getattr(client, xform_name(operation))
            with pytest.raises(MotoNotImplementedError) as info, contextlib.closing(client):
                call()
            assert (info.value.service, info.value.operation) == (service, operation)
            assert detail in str(info.value)
            assert attempts == [1], endpoint  # moto's server answers 501, never retried
    # Function code reached the server over loopback: counted, one keep-alive connection.
    opened = [e for e in function_scope.events if isinstance(e, connections.ConnectionEvent)]
    assert [(e.host, e.port) for e in opened] == [("127.0.0.1", int(moto_server.split(":")[2]))] * 2


def test_a_client_without_the_translation_still_reads_what_moto_lacks(moto_server):
    from botocore.exceptions import ClientError

    client = boto3.session.Session(region_name="us-east-1").client(
        "dynamodb", endpoint_url=moto_server
    )
    with pytest.raises(ClientError) as info, contextlib.closing(client):
        client.list_contributor_insights()
    error = info.value.response["Error"]
    assert error["Code"] in ("501", "NotImplemented")
    assert "does not implement the dynamodb operation ListContributorInsights" in str(info.value)
    assert info.value.response["ResponseMetadata"]["RetryAttempts"] == 0


def test_the_moto_server_ends_kept_alive_connections_when_it_stops(monkeypatch):
    from pytest_lambda_context.services.aws import _MotoServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    threads = set(threading.enumerate())
    fds = open_fd_targets()
    server = _MotoServer()
    client = boto3.session.Session(region_name="us-east-1").client("s3", endpoint_url=server.url)
    client.list_buckets()
    client.list_buckets()  # the same kept-alive connection, still open
    server.stop()
    client.close()
    assert set(threading.enumerate()) <= threads
    assert open_fd_targets() <= fds  # nothing of the server's or the client's is left open


def test_events_and_errors_pickle_for_process_isolation():
    event = ClientEvent("fn", "env-1", None, "s3", "app/x.py:3 in <module>", 1.0)
    assert pickle.loads(pickle.dumps(event)) == event
    assert event.describe() == "env-1 init: s3 client created at app/x.py:3 in <module>"
    error = pickle.loads(pickle.dumps(MotoNotImplementedError("chime", "ListAccounts", "x")))
    assert (error.service, error.operation) == ("chime", "ListAccounts")
    assert "does not implement the chime operation ListAccounts (x)" in str(error)


def test_clients_outside_function_code_are_not_counted(function_scope):
    set_scope(None)
    boto3.session.Session(region_name="us-east-1").client("s3")
    assert function_scope.events == []


def test_install_patches_botocore_lazily_and_uninstall_restores_it():
    code = textwrap.dedent(
        """
        import sys
        from pytest_lambda_context.services import aws
        from pytest_lambda_context.observe import clients
        from pytest_lambda_context import plugin
        assert not {"moto", "boto3", "botocore"} & set(sys.modules), sorted(sys.modules)
        clients.install()
        clients.install()
        assert "botocore" not in sys.modules
        import botocore.session
        patched = vars(botocore.session.Session)["create_client"]
        assert patched is clients._create_client
        clients.uninstall()
        assert vars(botocore.session.Session)["create_client"] is patched
        clients.uninstall()
        restored = vars(botocore.session.Session)["create_client"]
        assert restored is not patched and restored.__module__ == "botocore.session"
        assert clients._hook not in sys.meta_path
        clients.install()  # botocore loaded now: patched at once
        assert vars(botocore.session.Session)["create_client"] is patched
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
