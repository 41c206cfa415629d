"""``FunctionConfig``: one function's settings, checked once, as every part sees them.

``LambdaFunction(handler, **options)`` and the ``lambda_handler`` marker build one with
:meth:`FunctionConfig.build` (defaults filled in, the code root found, every option
checked); environments read it as ``spec``. Fixtures add to a function about to be
made through a :class:`FunctionWiring` each, merged in one place
(:meth:`FunctionConfig.wired`), so the order they run in does not matter.

A new option: a field below (its default and a docstring), its check in
``__post_init__``, and its form in docs/api.md. It decides warm reuse across tests
(``reuse_key``) unless it is marked ``_WIRING``.
"""

from __future__ import annotations

import os
from collections import ChainMap
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from pytest_lambda_context.environments.config import (
    NETWORK_POLICIES,
    check_code_root,
    check_env,
    check_execution_model,
    check_fresh_packages,
    check_function_name,
    check_handler,
    check_inherit_env,
    check_number,
    check_region,
    default_name,
    find_code_root,
    find_fresh_packages,
)
from pytest_lambda_context.environments.layers import check_layers
from pytest_lambda_context.environments.placeholders import check_placeholders
from pytest_lambda_context.environments.registry import Isolation, isolation_of
from pytest_lambda_context.runtime.clock import PluginClock
from pytest_lambda_context.runtime.handler import module_name_of

if TYPE_CHECKING:
    from pytest_lambda_context.environments.template import WorkerTemplate

__all__ = ["MARKER_OPTIONS", "OPTION_NAMES", "SHUTDOWN_GRACE", "FunctionConfig", "FunctionWiring"]

# What the plugin supplies around the user's options: not part of what makes two
# functions the same for warm reuse, and not a marker option.
_WIRING = {"wiring": True}
# An option the session decides (an ini option, a fixture), not the lambda_handler marker.
_SESSION = {"marker": False}


# Lambda's shutdown phase: with no extension the runtime is killed; with internal
# extensions only it gets SIGTERM and 500 ms, with external ones 2,000 ms.
SHUTDOWN_GRACE: dict[str | None, float] = {None: 0.0, "internal": 0.5, "external": 2.0}


@dataclass(frozen=True, kw_only=True)
class FunctionConfig:
    """A Lambda function's configuration, checked: every field holds a valid value.

    Build one with :meth:`build` (from what ``LambdaFunction`` takes); the fields hold
    the resolved values (``function_name`` and ``code_root`` filled in).
    """

    handler: str
    """What Lambda's ``_HANDLER`` takes: ``"app.search.handler"`` or ``"app/search.handler"``
    (1 to 128 characters, no white space). Whether it loads is decided at init."""

    env: Mapping[str, str] = field(default_factory=dict)
    """The function's environment variables (strings; no reserved name, no NUL); values
    may hold placeholders such as ``{es_url}`` and ``{proxy:NAME}``. Read-only."""

    timeout: float = 3.0
    """Seconds an invocation may run, 0.001 to 900."""

    memory_mb: int = 128
    """Memory size in MB, 128 to 10240: the context, the reserved variable, REPORT."""

    isolation: str = "module"
    """``"module"`` or ``"process"`` (see environments/registry.py for what each does)."""

    function_name: str
    """Lambda's function name (``AWS_LAMBDA_FUNCTION_NAME``); given as None, the
    handler's module with dots as dashes (``app-search``)."""

    code_root: str
    """The absolute folder whose modules are the function's code (``LAMBDA_TASK_ROOT``),
    re-imported on every cold start; given as None, the folder that holds the handler's
    top-level package (searched in ``search_paths``, the working directory, sys.path)."""

    idle_timeout: float | None = None
    """Seconds an environment may stay unused across ``idle()`` before it is shut down
    (None: never)."""

    max_concurrency: int | None = None
    """How many environments may be busy at once; past it a request is throttled."""

    region: str = "us-east-1"
    """``AWS_REGION``, ``AWS_DEFAULT_REGION`` and the region of the function's ARN."""

    inherit_env: tuple[str, ...] | bool = ()
    """The test process's variables function code sees besides PATH and LANG (True: all);
    given as None, False or a list of names."""

    fresh_packages: frozenset[str] = frozenset()
    """Top-level packages imported afresh for each environment in module isolation: the
    defaults (aws_lambda_powertools, aws_embedded_metrics) and those given (a list of
    importable package names)."""

    snap_start: bool = False
    """SnapStart: every environment is a restore of one snapshot (process isolation)."""

    per_environment_concurrency: int | None = None
    """Lambda Managed Instances: runtime processes per environment (process isolation;
    None: the default model)."""

    extensions: str | None = None
    """Lambda extensions registered: None (the runtime is killed at shutdown: no
    ``atexit``, no ``finally``, no signal handler runs), ``"internal"`` or
    ``"external"`` (SIGTERM first, then ``shutdown_grace`` seconds, then killed)."""

    layers: tuple[str, ...] = ()
    """Lambda layers: folders, each holding what a layer's zip holds, merged at ``/opt``
    in order (a later layer's file wins; at most 5); see environments/layers.py."""

    network: str = field(default="allow", metadata=_SESSION)
    """``"allow"`` or ``"loopback"``: where function code may connect (the plugin sets it
    from the lambda_network option, and the aws fixture)."""

    # New options go here, above the wiring: a field, its default and a docstring; its
    # check in __post_init__; its form in docs/api.md.

    # -- what the plugin supplies (fixtures and the session); not for reuse ----------
    clock: PluginClock = field(default_factory=PluginClock, metadata=_WIRING)
    """The session's clock: shared by its functions and proxies, moved by ``idle()``."""

    placeholders: Mapping[str, Callable[[], str]] = field(default_factory=dict, metadata=_WIRING)
    """What fills ``{name}`` placeholders in ``env``; kept as given (a live mapping), so a
    ``tcp_proxy`` made after the function is found when an environment is created."""

    search_paths: tuple[str, ...] = field(default=(), metadata=_WIRING)
    """Where the default ``code_root`` is looked for first (pytest's rootdir, the
    invocation directory)."""

    worker_pool: WorkerTemplate | None = field(default=None, metadata=_WIRING)
    """Process isolation: the session's template process (None: the function starts one)."""

    tmp_root: str | None = field(default=None, metadata=_WIRING)
    """Where environments get their /tmp folders (None: the system's temp folder)."""

    host_paths: tuple[str, ...] = field(default=(), metadata=_WIRING)
    """Host folders that process isolation's private /tmp must still show (pytest's)."""

    credentials: Mapping[str, str] = field(default_factory=dict, metadata=_WIRING)
    """The execution role's credentials, which Lambda sets (the aws fixture's fakes)."""

    chaos_seed: str | None = field(default=None, metadata=_WIRING)
    """Chaos routing: the seed of this function's routing choices (None: Lambda's usual
    routing; see environments/chaos.py)."""

    code_root_prefix: str = field(init=False, metadata=_WIRING)
    """``code_root`` with one trailing separator: what module paths are matched against."""

    layer_prefixes: tuple[str, ...] = field(init=False, metadata=_WIRING)
    """Each of ``layers`` with one trailing separator (their modules are the function's)."""

    def __post_init__(self) -> None:
        check_handler(self.handler)
        capabilities = isolation_of(self.isolation)
        if self.network not in NETWORK_POLICIES:
            raise ValueError(
                f"network={self.network!r} is not valid; choose one of: "
                f"{', '.join(NETWORK_POLICIES)}"
            )
        check_number("timeout", self.timeout, minimum=0.001, maximum=900)
        check_number("memory_mb", self.memory_mb, minimum=128, maximum=10240, integer=True)
        if self.idle_timeout is not None:
            check_number("idle_timeout", self.idle_timeout, minimum=0)
        if self.max_concurrency is not None:
            check_number("max_concurrency", self.max_concurrency, minimum=1, integer=True)
        check_execution_model(capabilities, self.snap_start, self.per_environment_concurrency)
        check_function_name(self.function_name)
        check_code_root(self.code_root)
        check_region(self.region)
        env = check_env(self.env)
        check_inherit_env(self.inherit_env)
        check_fresh_packages(self.fresh_packages)
        object.__setattr__(self, "layers", check_layers(self.layers))
        # {postgres_url} and the like come from fixtures wired in later (see ``wired``);
        # a name that nothing can supply is wrong already.
        check_placeholders(env, self.placeholders, services_later=True)
        if self.extensions not in SHUTDOWN_GRACE:
            raise ValueError(
                f"extensions={self.extensions!r} is not valid; choose None (no extension: "
                "the runtime is killed at shutdown), 'internal' or 'external' (SIGTERM and "
                "a grace period of 500 ms or 2,000 ms first)"
            )
        object.__setattr__(self, "env", MappingProxyType(env))
        object.__setattr__(self, "code_root_prefix", self.code_root.rstrip(os.sep) + os.sep)
        object.__setattr__(
            self, "layer_prefixes", tuple(layer.rstrip(os.sep) + os.sep for layer in self.layers)
        )

    @classmethod
    def build(cls, handler: str, options: Mapping[str, Any]) -> FunctionConfig:
        """The config of ``LambdaFunction(handler, **options)``: defaults filled in, the
        code root found, every option checked (TypeError or ValueError saying what is
        wrong and the right form)."""
        # ``options`` hold Any: the values as the user gave them, passed on to the fields;
        # the checks here and in __post_init__ decide whether they fit.
        check_handler(handler)
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(OPTION_NAMES)}"
            )
        given = dict(options)
        module_name = module_name_of(handler)
        # Resolved before the checks of __post_init__, which see the final values.
        name = given.pop("function_name", None)
        root = given.pop("code_root", None)
        search_paths = tuple(os.fspath(p) for p in given.pop("search_paths", ()))
        if root is not None:
            root = check_code_root(root)
        else:
            root = find_code_root(module_name, list(search_paths))
        inherit = given.pop("inherit_env", None)
        if "isolation" in given:
            isolation_of(given["isolation"])  # isolation=None: say so before the rest
        for key in ("env", "placeholders", "credentials"):
            if given.get(key, ()) is None:
                del given[key]
        for key in ("host_paths",):
            if key in given:
                given[key] = tuple(os.fspath(p) for p in given[key])
        if given.get("tmp_root") is not None:
            given["tmp_root"] = os.fspath(given["tmp_root"])
        if given.get("clock", ()) is None:
            del given["clock"]
        fresh = given.pop("fresh_packages", None)
        return cls(
            handler=handler,
            function_name=default_name(module_name, handler) if name is None else name,
            code_root=root,
            inherit_env=check_inherit_env(inherit),
            fresh_packages=find_fresh_packages(fresh, root),
            search_paths=search_paths,
            **given,
        )

    @property
    def shutdown_grace(self) -> float:
        """Seconds between SIGTERM and the kill at shutdown (0: killed at once)."""
        return SHUTDOWN_GRACE[self.extensions]

    @property
    def capabilities(self) -> Isolation:
        """What this function's isolation can do (environments/registry.py)."""
        return isolation_of(self.isolation)

    def wired(self, wirings: Iterable[FunctionWiring]) -> FunctionConfig:
        """This config with what fixtures add: their variables under the test's own
        ``env`` (the test may point a service elsewhere on purpose), their placeholders
        beside the given ones, the credentials and the template they supply."""
        wirings = list(wirings)
        if not wirings:
            return self
        env: dict[str, str] = {}
        placeholders: list[Mapping[str, Callable[[], str]]] = [self.placeholders]
        credentials, worker_pool = self.credentials, self.worker_pool
        for wiring in wirings:
            env.update(wiring.env)
            # Even an empty one: a tcp_proxy factory's mapping fills in later.
            placeholders.append(wiring.placeholders)
            if wiring.credentials is not None:
                credentials = wiring.credentials
            if wiring.worker_pool is not None:
                worker_pool = wiring.worker_pool
        env.update(self.env)
        return replace(
            self,
            env=env,
            # A ChainMap keeps each mapping live (a proxy made later is found).
            # (read only here: ChainMap's type asks for mutable mappings)
            placeholders=ChainMap(
                *cast("list[MutableMapping[str, Callable[[], str]]]", placeholders)
            ),
            credentials=credentials,
            worker_pool=worker_pool,
        )

    def reuse_key(self) -> tuple[Hashable, ...]:
        """What makes two functions the same for warm reuse across tests: every option,
        none of the wiring."""
        key: list[Hashable] = []
        for option in fields(self):
            if option.metadata.get("wiring"):
                continue
            value = getattr(self, option.name)
            if isinstance(value, Mapping):
                value = tuple(sorted(value.items()))
            elif isinstance(value, frozenset):
                value = tuple(sorted(value))
            key.append(value)
        return tuple(key)


# What LambdaFunction takes besides the handler, and what of it the lambda_handler
# marker takes (the options above the wiring that the session does not decide).
OPTION_NAMES: tuple[str, ...] = tuple(
    f.name for f in fields(FunctionConfig) if f.init and f.name != "handler"
)
MARKER_OPTIONS: tuple[str, ...] = tuple(
    f.name
    for f in fields(FunctionConfig)
    if f.init and f.name != "handler" and not f.metadata.get("wiring")
    if f.metadata.get("marker", True)
)


@dataclass(frozen=True, kw_only=True)
class FunctionWiring:
    """What one fixture adds to a function about to be made (a function preparer's
    answer; see :meth:`FunctionConfig.wired` for how they are merged)."""

    env: Mapping[str, str] = field(default_factory=dict)
    """Variables function code needs for the fixture (the test's own ``env`` wins)."""

    placeholders: Mapping[str, Callable[[], str]] = field(default_factory=dict)
    """Suppliers of ``{name}`` placeholders (kept live)."""

    credentials: Mapping[str, str] | None = None
    """The execution role's credentials (None: leave them)."""

    worker_pool: WorkerTemplate | None = None
    """The session's template process for process isolation (None: leave it)."""
