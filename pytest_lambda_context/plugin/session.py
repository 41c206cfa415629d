"""The plugin's per-session state (kept in ``config.stash``) and per-test bookkeeping."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lambda_context.plugin.function_records import function_record
from pytest_lambda_context.plugin.markers import marker_arguments
from pytest_lambda_context.plugin.options import package_names

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function import LambdaFunction
    from pytest_lambda_context.environments.function_config import FunctionConfig, FunctionWiring
    from pytest_lambda_context.environments.template import WorkerTemplate
    from pytest_lambda_context.plugin.history import SessionHistory
    from pytest_lambda_context.runtime.clock import PluginClock
    from pytest_lambda_context.runtime.context import LambdaContext
    from pytest_lambda_context.runtime.records import FunctionRecord
    from pytest_lambda_context.services.aws import MotoServers
    from pytest_lambda_context.services.docker_engine import DockerStatus
    from pytest_lambda_context.services.elasticsearch.backends import Decision

__all__ = ["RECORDS_ATTRIBUTE", "STATE_KEY", "PluginState", "TestFunctions"]

# Under pytest-xdist a worker's records travel to the controller on the teardown report
# of their test, as this attribute (pytest's report serialisation keeps extra attributes).
RECORDS_ATTRIBUTE = "lambda_context_records"


class TestFunctions:
    """The functions a test made, and where their counts stood when its body began."""

    __test__ = False  # not a test class, whatever pytest's collection rules say
    KEY: pytest.StashKey[TestFunctions] = pytest.StashKey()

    def __init__(self) -> None:
        self.functions: list[LambdaFunction] = []
        self.marks: dict[int, tuple[int, int]] = {}
        self.broken: dict[int, dict[str | None, list[str]]] = {}
        # Functions of wider-scoped fixtures this test uses -> who made (and reports) them.
        self.owners: dict[int, TestFunctions] = {}
        # Chaos routing: the seed its functions were routed with (None: chaos was off).
        self.chaos_seed: int | None = None
        # The test failed (its setup or body): the reports mark it.
        self.failed = False

    @classmethod
    def of(cls, item: pytest.Item) -> TestFunctions:
        tracked = item.stash.get(cls.KEY, None)
        if tracked is None:
            tracked = item.stash[cls.KEY] = cls()
        return tracked

    @classmethod
    def adopt_fixture_functions(cls, item: pytest.Item, state: PluginState) -> None:
        """Track the functions the test's fixtures hold, made at a wider scope."""
        module = sys.modules.get("pytest_lambda_context.environments.function")
        if module is not None and any(
            isinstance(value, module.LambdaFunction)
            for value in getattr(item, "funcargs", {}).values()
        ):
            cls.of(item).adopt(item, state.function_owners)

    def adopt(self, item: pytest.Item, owners: Mapping[int, TestFunctions]) -> None:
        """The functions of wider-scoped fixtures that this test uses (a module-scoped
        ``factories.lambda_function``, a ``LambdaFunction`` a fixture built itself): the
        test's limits apply to them too."""
        module = sys.modules.get("pytest_lambda_context.environments.function")
        if module is None:  # no LambdaFunction exists yet
            return
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, module.LambdaFunction) and all(
                value is not known for known in self.functions
            ):
                self.functions.append(value)
                owner = owners.get(id(value))
                if owner is not None:
                    self.owners[id(value)] = owner

    def mark_body_start(self) -> None:
        for function in self.functions:
            self.marks[id(function)] = (
                len(function.connections.events),
                len(function.client_events),
            )

    def check_limits(self, item: pytest.Item) -> None:
        if any(env.c_drivers for function in self.functions for env in function.environments):
            from pytest_lambda_context.plugin.uncounted import warn_uncounted

            checked = item.get_closest_marker("max_connections") is not None
            start = {key: mark[0] for key, mark in self.marks.items()}
            warn_uncounted(item, self.functions, start, checked=checked)
        if self.functions and (
            item.get_closest_marker("max_connections") or item.get_closest_marker("max_clients")
        ):
            from pytest_lambda_context.plugin.limits import check_limits

            found = check_limits(item, self.functions, self.marks, _moto_ports(item))
            # The summary marks the environments that broke a limit.
            self.broken = found.broken
            for key, marks in found.broken.items():  # reported by whoever made them
                owner = self.owners.get(key)
                if owner is not None:
                    for environment, lines in marks.items():
                        owner.broken.setdefault(key, {}).setdefault(environment, []).extend(lines)
            if found.problems:
                pytest.fail("\n".join(found.problems), pytrace=False)

    def figures(self) -> list[tuple[str, int]]:
        """The test's figures as ``user_properties`` (JUnit XML, pytest-html show them):
        environments that served its invocations, cold starts, invocations,
        connections opened and boto3 clients created, over the functions it made."""
        functions = self.functions
        environments = {
            (id(function), invocation.environment_id)
            for function in functions
            for invocation in function.invocations
        }
        return [
            ("lambda_environments", len(environments)),
            ("lambda_cold_starts", sum(f.cold_starts for f in functions)),
            ("lambda_invocations", sum(len(f.invocations) for f in functions)),
            ("lambda_connections", sum(f.connections.opened() for f in functions)),
            ("lambda_boto3_clients", sum(f.clients_created() for f in functions)),
        ]

    def report_lines(self) -> list[str]:
        """A failing test's REPORT lines: the first and last few, and how many between."""
        if not self.functions:
            return []
        from pytest_lambda_context.plugin.report import shortened

        lines = []
        for function in self.functions:
            for invocation in function.invocations:
                error = f" error {invocation.error['errorType']}" if invocation.error else ""
                lines.append(
                    f"[{function.function_name} {invocation.environment_id}"
                    f"{' cold' if invocation.cold else ''}{error}] {invocation.report_line}"
                )
        return shortened(lines)


class PluginState:
    def __init__(self, config: pytest.Config, options: dict[str, str | None]) -> None:
        self.config = config
        self.options = options
        # Plain data of every function closed this session; full invocation records
        # only when a JSON report was asked for (a long session would hold them all).
        self.records: list[FunctionRecord] = []
        self._history: SessionHistory | None = None
        # An xdist worker sends its records to the controller, which reports them.
        self.is_xdist_worker = hasattr(config, "workerinput")
        self._clock: PluginClock | None = None
        # Other parts of the plugin (Elasticsearch, AWS) add lines and finalizers here.
        self.header_extras: list[Callable[[], str]] = []
        # Every open function the fixtures made -> the TestFunctions that reports it.
        self.function_owners: dict[int, TestFunctions] = {}
        self.session_finalizers: list[Callable[[], None]] = []
        # Made at first use, kept for the session.
        self.es_decision: Decision | None = None
        self.docker_probe: DockerStatus | None = None
        self.worker_template: WorkerTemplate | None = None
        self.environments_folder: str | None = None
        self._moto_servers: MotoServers | None = None
        # Called with (request, config) before each function is made (es_url, aws); each
        # says what it adds to the function (see FunctionConfig.wired).
        self.function_preparers: list[
            Callable[[pytest.FixtureRequest, FunctionConfig], FunctionWiring]
        ] = []
        self.function_preparers.append(self._prepare_worker_pool)
        self._chaos_seed: int | None = None
        # lambda_handler markers whose function config was built at collection.
        self._checked: set[str] = set()

    @property
    def moto_servers(self) -> MotoServers:
        if self._moto_servers is None:
            from pytest_lambda_context.services.aws import MotoServers

            self._moto_servers = MotoServers()
            self.session_finalizers.append(self._moto_servers.stop)
        return self._moto_servers

    @property
    def keeps_invocations(self) -> bool:
        """Whether records hold every invocation: only a report needs them."""
        return bool(self.options["lambda_report"] or self.options["lambda_html"])

    @property
    def history(self) -> SessionHistory:
        """The session's records put together, for the summary and both reports: built
        once, at the end of the session (again only if records came in since)."""
        history = self._history
        if history is None or len(history.records) != len(self.records):
            from pytest_lambda_context.plugin.history import SessionHistory

            history = self._history = SessionHistory(list(self.records))
        return history

    @property
    def clock(self) -> PluginClock:
        if self._clock is None:
            from pytest_lambda_context.runtime.clock import PluginClock

            self._clock = PluginClock()
        return self._clock

    # -- fixtures ------------------------------------------------------------------
    def handler_for(self, node: pytest.Item) -> tuple[str, dict[str, Any]]:
        marker = node.get_closest_marker("lambda_handler")
        if marker is not None:
            config = marker_arguments(marker)
            return config.pop("handler"), config
        handler = self.options["lambda_handler"]
        if handler is None:
            # The message is all there is to say: no traceback through the plugin.
            pytest.fail(
                "The lambda_function fixture needs to know which handler to load: mark the test, "
                "class or module with @pytest.mark.lambda_handler('app.search.handler') or set "
                "lambda_handler = app.search.handler in the [pytest] ini section",
                pytrace=False,
            )
        return handler, {}

    def chaos_seed_for(self, node: pytest.Item | pytest.Collector) -> int | None:
        """The chaos routing seed for functions made under ``node`` (None: chaos is off):
        its nearest lambda_chaos marker's, else the lambda_chaos option's."""
        marker = node.get_closest_marker("lambda_chaos")
        if marker is not None:
            seed: int | None = marker_arguments(marker)["seed"]
            return self.session_chaos_seed() if seed is None else seed
        option = self.options.get("lambda_chaos")
        return None if not option else int(option)

    def session_chaos_seed(self) -> int:
        """The lambda_chaos option's seed, else one drawn for this session."""
        if self._chaos_seed is None:
            option = self.options.get("lambda_chaos")
            self._chaos_seed = int(option) if option else secrets.randbelow(10**6)
        return self._chaos_seed

    def check_function(self, item: pytest.Item, arguments: dict[str, Any]) -> None:
        """Build the config of the function a ``lambda_handler`` marker names, as the
        test would make it: a bad value fails collection, not the test's setup."""
        from pytest_lambda_context.environments.function_config import FunctionConfig

        options = dict(arguments)
        handler = options.pop("handler")
        key = repr(sorted(options.items(), key=lambda kv: kv[0])) + handler
        if key in self._checked:
            return
        FunctionConfig.build(handler, self.function_options(item.config, options))
        self._checked.add(key)

    def context_for(self, node: pytest.Item) -> LambdaContext:
        import uuid

        from pytest_lambda_context.runtime.context import LambdaContext

        marker = node.get_closest_marker("lambda_handler")
        config = marker_arguments(marker) if marker is not None else {}
        name = config.get("function_name") or "test-function"
        return LambdaContext(
            aws_request_id=str(uuid.uuid4()),
            function_name=name,
            memory_limit_in_mb=config.get("memory_mb", 128),
            timeout=config.get("timeout", 3.0),
        )

    @contextmanager
    def function_factory(
        self, request: pytest.FixtureRequest, tracked: TestFunctions
    ) -> Iterator[Callable[..., LambdaFunction]]:
        from pytest_lambda_context.environments.function import LambdaFunction
        from pytest_lambda_context.environments.function_config import FunctionConfig

        # What this test's reporting imports, loaded before function code runs: a
        # handler may block an import (``sys.modules["json"] = None``) for the process.
        from pytest_lambda_context.plugin import limits, report, uncounted  # noqa: F401

        made: list[LambdaFunction] = []
        root = logging.getLogger()
        saved_logging = (root.level, list(root.handlers))
        boto3 = sys.modules.get("boto3")
        saved_session = getattr(boto3, "DEFAULT_SESSION", None)
        config = request.config

        def factory(handler: str, **options: Any) -> LambdaFunction:
            given = self.function_options(config, options)
            given.setdefault("network", self.network_for(request))
            given.setdefault("clock", self.clock)
            given.setdefault("tmp_root", self.environments_tmp(request))
            given.setdefault("host_paths", [self.pytest_basetemp(request)])
            seed = self.chaos_seed_for(request.node)
            if seed is not None:
                from pytest_lambda_context.environments.chaos import function_seed

                tracked.chaos_seed = seed
                given.setdefault("chaos_seed", function_seed(seed, request.node.nodeid, len(made)))
            built = FunctionConfig.build(handler, given)
            # Each fixture sees the same config and says what it adds; ``wired`` merges.
            built = built.wired(prepare(request, built) for prepare in self.function_preparers)
            function = LambdaFunction.from_config(built)
            made.append(function)
            tracked.functions.append(function)
            self.function_owners[id(function)] = tracked
            return function

        try:
            yield factory
        finally:
            try:
                failures: list[Exception] = []
                for function in reversed(made):
                    self.function_owners.pop(id(function), None)
                    try:
                        function.close()
                    except Exception as exc:  # close the others all the same
                        failures.append(exc)
                    self.records.append(
                        function_record(
                            function,
                            request.node.nodeid,
                            tracked.broken.get(id(function), {}),
                            invocations=self.keeps_invocations,
                            failed=tracked.failed,
                        )
                    )
                if failures:
                    raise failures[0]
            finally:
                # Handler code of the next test sees real time again.
                self.clock.restore_wall_clock()
                # Init code often configures logging (and boto3's default session);
                # the next test must not inherit it.
                root.setLevel(saved_logging[0])
                root.handlers[:] = saved_logging[1]
                loaded_boto3: Any = sys.modules.get("boto3")
                if loaded_boto3 is not None:
                    loaded_boto3.DEFAULT_SESSION = saved_session

    def function_options(self, config: pytest.Config, options: Mapping[str, Any]) -> dict[str, Any]:
        """A function's options with the session's defaults under them: the
        lambda_isolation and lambda_fresh_packages options, a code root relative to
        the rootdir, and where its default is looked for."""
        given = dict(options)
        given.setdefault("isolation", self.options["lambda_isolation"])
        more_fresh = self.options["lambda_fresh_packages"]
        if more_fresh:
            named = given.get("fresh_packages") or ()
            if not isinstance(named, str):  # else the config says what is wrong
                given["fresh_packages"] = [*package_names(more_fresh), *named]
        code_root = given.get("code_root")
        if isinstance(code_root, (str, os.PathLike)) and not os.path.isabs(code_root):
            given["code_root"] = os.path.join(str(config.rootpath), code_root)
        given.setdefault("search_paths", [str(config.rootpath), str(config.invocation_params.dir)])
        return given

    def _prepare_worker_pool(
        self, request: pytest.FixtureRequest, config: FunctionConfig
    ) -> FunctionWiring:
        from pytest_lambda_context.environments.function_config import FunctionWiring

        # One template process for the whole session, started at first use, so only
        # the first function pays for its imports.
        if not config.capabilities.needs_template or config.worker_pool is not None:
            return FunctionWiring()
        template = self.worker_template
        if template is None:
            from pytest_lambda_context.environments.template import WorkerTemplate

            # Coverage's relative paths (--cov=app) point where pytest was started.
            root = str(request.config.invocation_params.dir)
            template = self.worker_template = WorkerTemplate(coverage_root=root)
            self.session_finalizers.append(template.close)
            template.start()
        return FunctionWiring(worker_pool=template)

    def environments_tmp(self, request: pytest.FixtureRequest) -> str:
        """The session's folder for environments' /tmp, under pytest's own temp folder:
        pytest keeps only the last few sessions' folders, so even a killed session
        leaves no lasting litter."""
        if self.environments_folder is None:
            factory = request.getfixturevalue("tmp_path_factory")
            self.environments_folder = str(factory.mktemp("lambda-environments", numbered=True))
        return self.environments_folder

    def pytest_basetemp(self, request: pytest.FixtureRequest) -> str:
        """pytest's temporary folder of this session (``tmp_path`` lives in it)."""
        factory = request.getfixturevalue("tmp_path_factory")
        return str(factory.getbasetemp())

    def network_for(self, request: pytest.FixtureRequest) -> str:
        network = self.options["lambda_network"]
        if network is not None:
            return str(network)
        return "loopback" if "aws" in request.fixturenames else "allow"

    # -- reporting -------------------------------------------------------------------
    def header_lines(self, *, verbose: bool = False, checks_connections: bool = False) -> list[str]:
        """One line; with -v also the caveats (shared /tmp, C-level drivers), and the
        C-driver one without -v where a connection limit is checked."""
        o = self.options
        line = f"lambda-context: isolation={o['lambda_isolation']}, start={o['lambda_start']}"
        extras = [text for text in (extra() for extra in self.header_extras) if text]
        lines = [", ".join([line, *extras])]
        if o.get("lambda_chaos"):
            seed = o["lambda_chaos"]
            lines.append(
                f"lambda-context: chaos routing, seed {seed} (replay with --lambda-chaos={seed})"
            )
        if verbose or checks_connections:
            from pytest_lambda_context.plugin.uncounted import header_line

            note = header_line()
            if note:
                lines.append(f"lambda-context: {note}")
        from pytest_lambda_context.environments.registry import isolation_of

        if verbose and isolation_of(o["lambda_isolation"] or "module").private_tmp:
            from pytest_lambda_context.environments.sandbox import probe_private_tmp

            refused = probe_private_tmp()
            if refused is not None:
                lines.append(
                    f"lambda-context: environments share the literal /tmp: {refused}; "
                    "each still has its own TMPDIR (see docs: isolation)"
                )
        return lines

    def send_records(self, report: pytest.TestReport) -> None:
        """In an xdist worker: the records of the test onto its teardown report."""
        if not self.is_xdist_worker or not self.records:
            return
        from pytest_lambda_context.plugin.report import plain_records

        # Records are appended at teardown of their test: the pending ones are this test's.
        setattr(report, RECORDS_ATTRIBUTE, plain_records(self.records))
        self.records.clear()

    def receive_records(self, report: pytest.TestReport) -> None:
        """On the xdist controller: the records a worker sent on a teardown report."""
        records = getattr(report, RECORDS_ATTRIBUTE, None)
        if records and not self.is_xdist_worker:
            self.records.extend(records)

    def terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records or self.is_xdist_worker:
            return
        from pytest_lambda_context.plugin.report import summary_lines

        lines = summary_lines(self.history)
        if not lines:
            return
        terminalreporter.write_sep("=", "lambda-context")
        for line in lines:
            terminalreporter.write_line(line)

    def finish(self) -> None:
        try:
            json_path = self.options["lambda_report"]
            html_path = self.options["lambda_html"]
            if (json_path or html_path) and not self.is_xdist_worker:
                from pytest_lambda_context.services.urls import without_password

                # Reports end up as CI artefacts: no password from lambda_es_url in them.
                shown = {
                    name: without_password(value) if isinstance(value, str) else value
                    for name, value in self.options.items()
                }
                if json_path:
                    from pytest_lambda_context.plugin.report import write_json

                    write_json(json_path, self.history, {"options": shown})
                if html_path:
                    from pytest_lambda_context.plugin.html_report import write_html

                    write_html(html_path, self.history, {"options": shown})
        finally:
            while self.session_finalizers:
                self.session_finalizers.pop()()


STATE_KEY: pytest.StashKey[PluginState] = pytest.StashKey()


def _moto_ports(item: pytest.Item) -> frozenset[int]:
    """The port of the session's moto server (process isolation), for via="aws"."""
    from urllib.parse import urlsplit

    state = item.config.stash.get(STATE_KEY, None)
    servers = state.moto_servers.current if state is not None else None
    port = urlsplit(servers.url).port if servers is not None else None
    return frozenset() if port is None else frozenset({port})
