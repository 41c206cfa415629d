"""pytest hooks and fixture wiring for pytest-lambda-context; the work is elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lambda_context.plugin import markers, options
from pytest_lambda_context.plugin.session import STATE_KEY, PluginState, TestFunctions
from pytest_lambda_context.services.datastores.registry import DATASTORES

if TYPE_CHECKING:  # the fixtures' types; imported for real only when a test uses them
    from types import ModuleType

    from pytest_lambda_context.environments.base import ExecutionEnvironment
    from pytest_lambda_context.environments.function import LambdaFunction
    from pytest_lambda_context.observe.proxy import TcpProxy
    from pytest_lambda_context.runtime.context import LambdaContext
    from pytest_lambda_context.services.aws import AwsService
    from pytest_lambda_context.services.datastores.service import DatastoreService
    from pytest_lambda_context.services.elasticsearch.service import ElasticsearchService

_STATE = STATE_KEY


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


def pytest_configure(config: pytest.Config) -> None:
    markers.register(config)
    state = config.stash[_STATE] = PluginState(config, options.resolve_all(config))
    # Elasticsearch: a header line (modules load when called).
    state.header_extras.append(lambda: _es().header_line(state))
    # Services' placeholders in env values: {es_url}, {postgres_host}, ...
    state.function_preparers.append(
        lambda request, settings: _datastores().prepare_function(request, settings)
    )
    # tcp_proxy: {proxy:NAME} in env values.
    state.function_preparers.append(
        lambda request, settings: _proxies().prepare_function(request, settings)
    )
    # AWS: client accounting for every function; moto set up first when `aws` is used.
    state.function_preparers.append(
        lambda request, settings: _aws().prepare_function(request, settings)
    )
    # pytest-xdist: the controller reports the records its workers send on their reports.
    if not state.is_xdist_worker:
        config.pluginmanager.register(_RecordsFromWorkers(state), "lambda-context-records")


class _RecordsFromWorkers:
    def __init__(self, state: PluginState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.state.receive_records(report)


def _es() -> ModuleType:
    from pytest_lambda_context.plugin import es_fixture

    return es_fixture


def _datastores() -> ModuleType:
    from pytest_lambda_context.plugin import datastore_fixture

    return datastore_fixture


def _uncounted_header() -> str:
    from pytest_lambda_context.plugin.uncounted import header_line

    return header_line()


def _proxies() -> ModuleType:
    from pytest_lambda_context.plugin import proxy_fixture

    return proxy_fixture


def _aws() -> ModuleType:
    from pytest_lambda_context.plugin import aws_fixture

    return aws_fixture


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    markers.validate_items(items)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    markers.explain_unknown_marker(report, getattr(collector, "path", None))
    return report


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = config.stash[_STATE].header_lines()
    # C-level drivers: counted only through proxies, unseen by the guard.
    note = _uncounted_header()
    return [*lines, f"lambda-context: {note}"] if note else lines


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None:
        _es().skip_without_docker(item.config.stash[_STATE])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, object]:
    result = yield
    # Items live as long as the session: the test's functions (and whatever their
    # environments held) must not.
    if TestFunctions.KEY in item.stash:
        del item.stash[TestFunctions.KEY]
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    TestFunctions.of(item).mark_body_start()
    yield
    # Limits are checked only when the body passed: a failure says more than a count.
    TestFunctions.of(item).check_limits(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "teardown":
        item.config.stash[_STATE].send_records(report)  # under xdist, to the controller
    if report.failed:
        lines = item.stash.get(TestFunctions.KEY, TestFunctions()).report_lines()
        if lines:
            report.sections.append(("lambda-context invocations", "\n".join(lines)))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    config.stash[_STATE].terminal_summary(terminalreporter)


def pytest_sessionfinish(session: pytest.Session) -> None:
    session.config.stash[_STATE].finish()


@pytest.fixture
def make_lambda_function(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., LambdaFunction]]:
    """Factory: ``make_lambda_function("app.search.handler", **config)``; all closed after the test."""
    tracked = TestFunctions.of(request.node)
    with request.config.stash[_STATE].function_factory(request, tracked) as factory:
        yield factory


@pytest.fixture
def lambda_function(
    request: pytest.FixtureRequest, make_lambda_function: Callable[..., LambdaFunction]
) -> LambdaFunction:
    """The ``LambdaFunction`` named by the nearest ``lambda_handler`` marker or ini option."""
    handler, config = request.config.stash[_STATE].handler_for(request.node)
    return make_lambda_function(handler, **config)


@pytest.fixture(scope="module")
def _lambda_warm_pool() -> Iterator[dict[Any, ExecutionEnvironment]]:
    pool: dict[Any, ExecutionEnvironment] = {}
    yield pool
    for environment in pool.values():
        environment.shutdown("end of module")


@pytest.fixture
def lambda_env(
    request: pytest.FixtureRequest,
    lambda_function: LambdaFunction,
    _lambda_warm_pool: dict[Any, ExecutionEnvironment],
) -> Iterator[ExecutionEnvironment]:
    """An environment of ``lambda_function``: new (cold_start) or left warm by an earlier test."""
    from pytest_lambda_context.plugin.warm_start import lambda_env_for

    yield from lambda_env_for(request, lambda_function, _lambda_warm_pool)


@pytest.fixture
def lambda_context(request: pytest.FixtureRequest) -> LambdaContext:
    """A ``LambdaContext`` for calling a handler directly."""
    return request.config.stash[_STATE].context_for(request.node)


@pytest.fixture(scope="session")
def _lambda_es_service(pytestconfig: pytest.Config) -> Iterator[ElasticsearchService]:
    from pytest_lambda_context.plugin.es_fixture import session_service

    yield from session_service(pytestconfig.stash[_STATE])


@pytest.fixture
def es(_lambda_es_service: ElasticsearchService) -> ElasticsearchService:
    """The session's Elasticsearch (``ElasticsearchService``); counts start at 0 per test."""
    _lambda_es_service.reset_counts()
    return _lambda_es_service


@pytest.fixture
def es_url(es: ElasticsearchService) -> str:
    """``es.url``: the counting proxy's URL that handler code should use."""
    return str(es.url)


def _datastore_fixtures(name: str) -> tuple[Any, Any]:
    """The session's server of one datastore, and the per-test fixture named after it."""

    def service(pytestconfig: pytest.Config) -> Iterator[DatastoreService]:
        yield from _datastores().session_service(pytestconfig.stash[_STATE], name)

    def per_test(request: pytest.FixtureRequest) -> Iterator[DatastoreService]:
        session: DatastoreService = request.getfixturevalue(f"_lambda_{name}_service")
        yield from _datastores().holder(session)

    per_test.__doc__ = (
        f"The session's {name} (``DatastoreService``): ``url`` through a counting proxy, a "
        "database of this test's own; counts start at 0 per test."
    )
    return (
        pytest.fixture(scope="session", name=f"_lambda_{name}_service")(service),
        pytest.fixture(name=name)(per_test),
    )


# postgres, mysql, redis: one pair of fixtures per registered datastore.
for _name in DATASTORES:
    globals()[f"_lambda_{_name}_service"], globals()[f"_lambda_{_name}"] = _datastore_fixtures(
        _name
    )


@pytest.fixture
def tcp_proxy(pytestconfig: pytest.Config) -> Iterator[Callable[..., TcpProxy]]:
    """Factory: ``tcp_proxy(host, port, *, name=None, idle_timeout=350.0)`` -> a counting
    ``TcpProxy``; what function code opens through it counts, whatever opened it."""
    yield from _proxies().proxy_factory(pytestconfig.stash[_STATE])


@pytest.fixture
def aws(request: pytest.FixtureRequest) -> Iterator[AwsService]:
    """moto active for the test, fake credentials and region; ``aws.clients_created()``."""
    from pytest_lambda_context.plugin.aws_fixture import aws_fixture

    yield from aws_fixture(request)
