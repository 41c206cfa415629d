"""pytest's entry to pytest-lambda-context: hooks and fixtures; the work is elsewhere.

The only module of the package (with the option table) that a session imports when
pytest starts: pytest rewrites the asserts of every module of a plugin's distribution
it imports, and does it again at every start under PYTHONDONTWRITEBYTECODE=1. The rest
loads when a test uses the plugin; a session whose tests never do prints nothing of it
and fails on nothing of it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lambda_context.plugin import options
from pytest_lambda_context.services.datastores.registry import DATASTORES

if TYPE_CHECKING:  # the fixtures' types; imported for real only when a test uses them
    from types import ModuleType

    from pytest_lambda_context.environments.base import ExecutionEnvironment
    from pytest_lambda_context.environments.function import LambdaFunction
    from pytest_lambda_context.observe.proxy import TcpProxy
    from pytest_lambda_context.plugin.session import PluginState
    from pytest_lambda_context.runtime.context import LambdaContext
    from pytest_lambda_context.services.aws import AwsService
    from pytest_lambda_context.services.datastores.service import DatastoreService
    from pytest_lambda_context.services.elasticsearch.service import ElasticsearchService

_PACKAGE = "pytest_lambda_context"
_SESSION_MODULE = "pytest_lambda_context.plugin.session"

# The markers as `pytest --markers` lists them (registered without importing markers.py;
# tests/test_no_harm.py checks these lines against the signatures there).
MARKER_LINES = (
    "lambda_handler(handler, **config): which handler, and LambdaFunction options",
    "cold_start(): lambda_env is a new execution environment (the default)",
    "warm_start(): lambda_env is the environment earlier tests of this module warmed",
    "max_connections(n, *, per='environment', via=None, host=None, port=None): fail when an "
    "environment/invocation/the test opened more than n connections",
    "max_clients(n, *, per='environment', service=None): fail when function code created "
    "more than n boto3 clients",
    "docker(): the test needs a Docker engine; skipped when none answers",
    "lambda_chaos(seed=None): route invoke/invoke_many adversarially (any idle environment "
    "or a new one, idle ones recycled), reproducibly; seed=None: the session's seed",
)
# Markers that make a test one that uses the plugin (`docker` is a common name).
_OWN_MARKERS = frozenset(
    line.partition("(")[0] for line in MARKER_LINES if not line.startswith("docker(")
)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKER_LINES:
        config.addinivalue_line("markers", f"{line} (pytest-lambda-context)")
    # Bad option values are a usage error at start; nothing else is made until used.
    config.stash[options.RESOLVED] = options.resolve_all(config)
    # pytest-xdist: the controller reports the records its workers send on their reports.
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_RecordsFromWorkers(config), "lambda-context-records")


def _state(config: pytest.Config) -> PluginState:
    """The session's plugin state, made at first use."""
    from pytest_lambda_context.plugin.session import STATE_KEY, PluginState

    state = config.stash.get(STATE_KEY, None)
    if state is None:
        state = config.stash[STATE_KEY] = PluginState(config, config.stash[options.RESOLVED])
        _wire(state)
    return state


def plugin_state(config: pytest.Config) -> PluginState:
    """The session's plugin state (made at first use): for the factories' fixtures."""
    return _state(config)


def _used_state(config: pytest.Config) -> PluginState | None:
    """The session's plugin state if anything has used the plugin, else None."""
    session = sys.modules.get(_SESSION_MODULE)
    if session is None:
        return None
    found: PluginState | None = config.stash.get(session.STATE_KEY, None)
    return found


def _wire(state: PluginState) -> None:
    # Elasticsearch: a header line (modules load when called).
    state.header_extras.append(lambda: _es().header_line(state))
    # Services' placeholders in env values: {es_url}, {postgres_host}, ...
    state.function_preparers.append(
        lambda request, config: _datastores().prepare_function(request, config)
    )
    # tcp_proxy: {proxy:NAME} in env values.
    state.function_preparers.append(
        lambda request, config: _proxies().prepare_function(request, config)
    )
    # AWS: client accounting for every function; moto set up first when `aws` is used.
    state.function_preparers.append(
        lambda request, config: _aws().prepare_function(request, config)
    )


class _RecordsFromWorkers:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # The attribute's name is session.RECORDS_ATTRIBUTE (not imported for every report).
        if getattr(report, "lambda_context_records", None):
            _state(self.config).receive_records(report)


def _es() -> ModuleType:
    from pytest_lambda_context.plugin import es_fixture

    return es_fixture


def _datastores() -> ModuleType:
    from pytest_lambda_context.plugin import datastore_fixture

    return datastore_fixture


def _proxies() -> ModuleType:
    from pytest_lambda_context.plugin import proxy_fixture

    return proxy_fixture


def _aws() -> ModuleType:
    from pytest_lambda_context.plugin import aws_fixture

    return aws_fixture


# -- which tests use the plugin -----------------------------------------------------------


def _is_ours(value: object) -> bool:
    try:  # any object of a test module: a proxy's __getattr__ may do anything
        owner = getattr(value, "__module__", None) or getattr(value, "__name__", None)
    except Exception:
        return False
    return isinstance(owner, str) and (owner == _PACKAGE or owner.startswith(_PACKAGE + "."))


def _own_fixtures(item: pytest.Item) -> list[str]:
    """The test's fixtures that are the plugin's (a project's own ``aws`` is not)."""
    info = getattr(item, "_fixtureinfo", None)
    definitions = getattr(info, "name2fixturedefs", None) or {}
    found = []
    for name in getattr(item, "fixturenames", ()):
        chosen = definitions.get(name)  # the last definition is the one the test gets
        if chosen and _is_ours(getattr(chosen[-1], "func", None)):
            found.append(name)
    return found


# The plugin's fixtures that may run a container: the `docker` marker (a common name)
# skips only the tests that use one of them.
_CONTAINER_FIXTURES = frozenset({"es", "es_url", "postgres", "mysql", "redis"})


def _uses_containers(item: pytest.Item) -> bool:
    return any(
        name in _CONTAINER_FIXTURES or (name.startswith("_lambda_") and name.endswith("_service"))
        for name in _own_fixtures(item)
    )


def uses_plugin(item: pytest.Item) -> bool:
    """Whether a test uses the plugin: one of its fixtures (not a project's own of the
    same name), one of its markers, or names from the package in its module."""
    if _own_fixtures(item):
        return True
    if any(marker.name in _OWN_MARKERS for marker in item.iter_markers()):
        return True
    module = getattr(item, "module", None)
    return module is not None and _module_uses_plugin(item.config, module)


_MODULES_SEEN: pytest.StashKey[dict[str, bool]] = pytest.StashKey()


def _module_uses_plugin(config: pytest.Config, module: ModuleType) -> bool:
    seen = config.stash.setdefault(_MODULES_SEEN, {})
    name = module.__name__
    if name not in seen:
        seen[name] = any(_is_ours(value) for value in list(vars(module).values()))
    return seen[name]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Marker names are checked only when one of ours, or one nobody registered, is used:
    # a session without them never loads the checks.
    registered = {
        line.partition(":")[0].partition("(")[0].strip() for line in config.getini("markers")
    }
    names = {marker.name for item in items for marker in item.iter_markers()}
    if names & _OWN_MARKERS or names - registered:
        from pytest_lambda_context.plugin import markers

        markers.validate_items(
            items,
            uses_plugin,
            registered,
            lambda item, arguments: _state(config).check_function(item, arguments),
        )


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if report.failed:
        from pytest_lambda_context.plugin import markers

        markers.explain_unknown_marker(report, getattr(collector, "path", None))
    return report


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """The plugin's header, under pytest's "collected N items": only where a test uses it."""
    verbosity = config.getoption("verbose")
    if verbosity < 0 or config.getoption("no_header", False):
        return []
    used = [item for item in items if uses_plugin(item)]
    if not used:
        return []
    # The C-driver note matters where a connection limit is checked.
    checks = any(item.get_closest_marker("max_connections") for item in used)
    return _state(config).header_lines(verbose=verbosity > 0, checks_connections=checks)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None and _uses_containers(item):
        _es().skip_without_docker(_state(item.config))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, object]:
    result = yield
    session = sys.modules.get(_SESSION_MODULE)
    # Items live as long as the session: the test's functions (and whatever their
    # environments held) must not.
    if session is not None and session.TestFunctions.KEY in item.stash:
        del item.stash[session.TestFunctions.KEY]
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    state = _used_state(item.config)
    if state is not None:
        # A module-scoped factories.lambda_function's function: this test's limits apply.
        sys.modules[_SESSION_MODULE].TestFunctions.adopt_fixture_functions(item, state)
    tracked = _tracked(item)
    if tracked is not None:
        tracked.mark_body_start()
    yield
    tracked = _tracked(item)
    if tracked is not None:
        # Limits are checked only when the body passed: a failure says more than a count.
        tracked.check_limits(item)


def _tracked(item: pytest.Item) -> Any:
    """The test's ``TestFunctions`` if it made any function, else None."""
    session = sys.modules.get(_SESSION_MODULE)
    return None if session is None else item.stash.get(session.TestFunctions.KEY, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    state = _used_state(item.config)
    if state is None:
        return report
    tracked = _tracked(item)
    if report.failed and call.when != "teardown" and tracked is not None:
        tracked.failed = True  # before the fixtures' teardown makes the records
    if call.when == "teardown":
        if tracked is not None and tracked.functions:
            # On the teardown report, where JUnit XML reads a test's properties.
            figures = tracked.figures()
            item.user_properties.extend(figures)
            report.user_properties.extend(figures)
        state.send_records(report)  # under xdist, to the controller
    if report.failed and tracked is not None:
        lines = tracked.report_lines()
        if lines:
            report.sections.append(("lambda-context invocations", "\n".join(lines)))
        if tracked.chaos_seed is not None:
            seed = tracked.chaos_seed
            report.sections.append(
                (
                    "lambda-context chaos routing",
                    f"chaos routing seed {seed}: replay this routing with "
                    f"--lambda-chaos={seed} or @pytest.mark.lambda_chaos(seed={seed})",
                )
            )
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = _used_state(config)
    if state is not None:
        state.terminal_summary(terminalreporter)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = _used_state(config)
    if state is None:
        resolved = config.stash[options.RESOLVED]
        if not (resolved["lambda_report"] or resolved["lambda_html"]):
            return
        # A report asked for is written even when no test used a function: it says so.
        state = _state(config)
    state.finish()


@pytest.fixture
def make_lambda_function(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., LambdaFunction]]:
    """Factory: ``make_lambda_function("app.search.handler", **config)``; all closed after the test."""
    from pytest_lambda_context.plugin.session import TestFunctions

    tracked = TestFunctions.of(request.node)
    with _state(request.config).function_factory(request, tracked) as factory:
        yield factory


@pytest.fixture
def lambda_function(
    request: pytest.FixtureRequest, make_lambda_function: Callable[..., LambdaFunction]
) -> LambdaFunction:
    """The ``LambdaFunction`` named by the nearest ``lambda_handler`` marker or ini option."""
    handler, config = _state(request.config).handler_for(request.node)
    return make_lambda_function(handler, **config)


@pytest.fixture(scope="module")
def _lambda_kept_proxies() -> Iterator[list[Callable[[], None]]]:
    """Closers of the tcp_proxy proxies that warm environments of this module may still
    use: they outlive their test, and close after the environments (module end)."""
    closers: list[Callable[[], None]] = []
    yield closers
    while closers:
        closers.pop()()


@pytest.fixture(scope="module")
def _lambda_warm_pool(
    _lambda_kept_proxies: list[Callable[[], None]],
) -> Iterator[dict[Any, ExecutionEnvironment]]:
    pool: dict[Any, ExecutionEnvironment] = {}
    yield pool
    for environment in pool.values():
        environment.shutdown("end of module")


@pytest.fixture
def lambda_env(
    request: pytest.FixtureRequest,
    lambda_function: LambdaFunction,
    _lambda_warm_pool: dict[Any, ExecutionEnvironment],
    _lambda_kept_proxies: list[Callable[[], None]],
) -> Iterator[ExecutionEnvironment]:
    """An environment of ``lambda_function``: new (cold_start) or left warm by an earlier test."""
    from pytest_lambda_context.plugin.warm_start import lambda_env_for

    start = str(request.config.stash[options.RESOLVED]["lambda_start"])
    yield from lambda_env_for(
        request, lambda_function, _lambda_warm_pool, start, _lambda_kept_proxies
    )


@pytest.fixture
def lambda_context(request: pytest.FixtureRequest) -> LambdaContext:
    """A ``LambdaContext`` for calling a handler directly."""
    return _state(request.config).context_for(request.node)


@pytest.fixture(scope="session")
def _lambda_es_service(pytestconfig: pytest.Config) -> Iterator[ElasticsearchService]:
    from pytest_lambda_context.plugin.es_fixture import session_service

    yield from session_service(_state(pytestconfig))


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
        yield from _datastores().session_service(_state(pytestconfig), name)

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
    yield from _proxies().proxy_factory(_state(pytestconfig))


@pytest.fixture
def _lambda_aws(request: pytest.FixtureRequest) -> Iterator[AwsService]:
    # The plugin reads its moto service through this name: a project's own `aws`
    # fixture (moto's documented conftest has one) wins, and the plugin works around it.
    from pytest_lambda_context.plugin.aws_fixture import aws_fixture

    yield from aws_fixture(request, _state(request.config))


@pytest.fixture
def aws(_lambda_aws: AwsService) -> AwsService:
    """moto active for the test, fake credentials and region; ``aws.clients_created()``."""
    return _lambda_aws
