"""Network drivers that connect in C: invisible to the socket layer and to the guard.

Their connections are counted only when they reach one of the plugin's proxies
(``tcp_proxy``, ``es``); ``lambda_network = loopback`` cannot stop them. Listed are the
C-level drivers common in Lambda functions; the pure-Python ones (pg8000, asyncpg,
PyMySQL, redis-py, pymongo, kafka-python, the oracledb thin mode, httpx, requests,
boto3) go through Python's sockets and are seen there.

A driver is the function's when function code calls its connect (``ConnectHooks``
wraps it while the socket monitor is installed), not when something merely imports
it: powertools' Tracer makes X-Ray import psycopg2 whether or not a handler uses
PostgreSQL. Drivers without a Python-level connect to wrap (librdkafka's clients and
pycurl's handles are C types) count when function code imports them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import ParamSpec, TypeVar

from pytest_lambda_context.observe.scope import active_scope

__all__ = [
    "CONNECT_HOOKS",
    "C_DRIVERS",
    "CDriver",
    "ConnectHooks",
    "DriverWatch",
    "DriversUsed",
    "SharedProcessDriverWatch",
    "installed_c_drivers",
    "loaded_c_drivers",
]


@dataclass(frozen=True)
class CDriver:
    module: str  # the top-level module function code imports
    label: str  # "psycopg (libpq)"
    datastore: str  # what it talks to, for the remedy's example
    port: int  # that datastore's usual port
    proxy_name: str  # a name for the example tcp_proxy
    # An env value that hands the proxy's address to function code (default: the
    # bare "{proxy:<proxy_name>}", host:port).
    example: str = ""
    # What function code calls to connect: module attributes ("connect") or classmethods
    # ("Connection.connect"); empty: the driver counts when function code imports it.
    connects: tuple[str, ...] = ()

    def env_example(self) -> str:
        return self.example or "{proxy:" + self.proxy_name + "}"


C_DRIVERS = (
    CDriver(
        "psycopg", "psycopg (libpq)", "PostgreSQL", 5432, "postgres",
        "postgresql://USER@{proxy:postgres}/DBNAME",
        ("connect", "Connection.connect", "AsyncConnection.connect"),
    ),
    CDriver(
        "psycopg2", "psycopg2 (libpq)", "PostgreSQL", 5432, "postgres",
        "postgresql://USER@{proxy:postgres}/DBNAME", ("connect",),
    ),
    CDriver(
        "MySQLdb", "mysqlclient (libmysqlclient)", "MySQL", 3306, "mysql",
        connects=("connect", "Connect"),
    ),
    CDriver("confluent_kafka", "confluent-kafka (librdkafka)", "Kafka", 9092, "kafka"),
    CDriver(
        "grpc", "grpcio (gRPC C core)", "the gRPC server", 50051, "grpc",
        connects=("insecure_channel", "secure_channel"),
    ),
    CDriver("pycurl", "pycurl (libcurl)", "the HTTP server", 80, "http", "http://{proxy:http}/"),
    CDriver("pymssql", "pymssql (FreeTDS)", "SQL Server", 1433, "mssql", connects=("connect",)),
    CDriver("pyodbc", "pyodbc (ODBC)", "the database", 1433, "odbc", connects=("connect",)),
    CDriver("cx_Oracle", "cx_Oracle (Oracle Client)", "Oracle", 1521, "oracle", connects=("connect",)),
)  # fmt: skip
BY_MODULE = {driver.module: driver for driver in C_DRIVERS}
# Drivers that count when imported: nothing of theirs to wrap.
_IMPORT_COUNTED = frozenset(driver.module for driver in C_DRIVERS if not driver.connects)


@dataclass(frozen=True)
class DriversUsed:
    """An event in a scope: function code connected through these C-level drivers (or,
    for those without a connect to wrap, imported them)."""

    modules: tuple[str, ...]


class DriverWatch:
    """Notices C-level drivers as they get loaded (checked only when modules were added)."""

    def __init__(self) -> None:
        self._module_count = -1
        self._seen: frozenset[str] = frozenset()

    def news(self) -> list[DriversUsed]:
        """A ``DriversUsed`` event if a driver counted when imported was loaded since the
        last call (the others are reported by ``ConnectHooks`` when called)."""
        count = len(sys.modules)
        if count == self._module_count:
            return []
        self._module_count = count
        names = frozenset(d.module for d in loaded_c_drivers()) & _IMPORT_COUNTED
        if names <= self._seen:
            return []
        self._seen |= names
        return [DriversUsed(tuple(sorted(self._seen)))]


def loaded_c_drivers(modules: Mapping[str, object] | None = None) -> list[CDriver]:
    """The C-level drivers imported in this process (``sys.modules`` by default)."""
    loaded = sys.modules if modules is None else modules
    return [driver for driver in C_DRIVERS if driver.module in loaded]


def installed_c_drivers() -> list[CDriver]:
    """The C-level drivers that function code could import here (nothing is imported)."""
    found = []
    for driver in C_DRIVERS:
        try:
            spec = importlib.util.find_spec(driver.module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            found.append(driver)
    return found


class SharedProcessDriverWatch:
    """Which C-level drivers counted when imported an environment of module isolation uses.

    Its process is the test process, whose ``sys.modules`` also holds what the tests
    and other functions imported; so a driver counts as this environment's when one
    of its calls imported it, or when the function's own modules refer to it: the
    driver's module or an object of it in their globals, or SQLAlchemy (whose
    dialects load the driver on their own) while the driver is loaded.
    """

    def __init__(self) -> None:
        self._seen: frozenset[str] = frozenset()

    def news(self, imported: Iterable[str], own_modules: Iterable[ModuleType]) -> list[DriversUsed]:
        found = {name.partition(".")[0] for name in imported} & _IMPORT_COUNTED
        found |= _referenced(own_modules) & _IMPORT_COUNTED
        names = frozenset(found)
        if names <= self._seen:
            return []
        self._seen |= names
        return [DriversUsed(tuple(sorted(self._seen)))]


def _package_of(value: object) -> str:
    if isinstance(value, ModuleType):
        return value.__name__.partition(".")[0]
    owner = getattr(value, "__module__", None)
    if not isinstance(owner, str):
        owner = getattr(type(value), "__module__", "")
    return str(owner).partition(".")[0]


def _referenced(modules: Iterable[ModuleType]) -> set[str]:
    packages = set()
    for module in modules:
        for value in list(vars(module).values()):
            with contextlib.suppress(Exception):
                packages.add(_package_of(value))
    found = packages & set(BY_MODULE)
    if "sqlalchemy" in packages:
        found |= {driver.module for driver in loaded_c_drivers()}
    return found


class ConnectHooks:
    """Wraps the connect entry points of the C-level drivers, so that a call from function
    code is a ``DriversUsed`` event of its scope (outside function code, a wrapper only
    calls through). Drivers loaded later are wrapped as their import finishes.
    Installed and removed with the socket monitor (``connections.install``), under its
    lock; removing puts back exactly what was there."""

    def __init__(self) -> None:
        # (owner, attribute, what was there), in the order they were replaced.
        self._replaced: list[tuple[object, str, object]] = []
        self._wrapped: set[str] = set()
        self._finder: _WrapAfterImport | None = None

    def install(self) -> None:
        for driver in C_DRIVERS:
            module = sys.modules.get(driver.module)
            if driver.connects and module is not None:
                self.wrap(driver, module)
        self._finder = _WrapAfterImport(self)
        sys.meta_path.insert(0, self._finder)

    def uninstall(self) -> None:
        if self._finder is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self._finder)
            self._finder = None
        while self._replaced:
            owner, name, previous = self._replaced.pop()
            setattr(owner, name, previous)
        self._wrapped.clear()

    def wrap(self, driver: CDriver, module: ModuleType) -> None:
        if driver.module in self._wrapped:
            return
        self._wrapped.add(driver.module)
        for path in driver.connects:
            owner_name, _, name = path.rpartition(".")
            owner = getattr(module, owner_name, None) if owner_name else module
            raw = vars(owner).get(name) if owner is not None else None
            if raw is None:
                continue  # another version of the driver: nothing of that name to wrap
            if isinstance(raw, classmethod):
                replacement: object = classmethod(_noting(driver.module, raw.__func__))
            elif callable(raw):
                replacement = _noting(driver.module, raw)
            else:
                continue
            self._replaced.append((owner, name, raw))
            setattr(owner, name, replacement)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _noting(module: str, original: Callable[_P, _R]) -> Callable[_P, _R]:
    event = DriversUsed((module,))

    @functools.wraps(original)
    def connect(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        scope = active_scope()
        if scope is not None:
            scope.events.append(event)
        return original(*args, **kwargs)

    return connect


class _WrapAfterImport:
    """A meta path finder for the drivers' top-level modules: the module's own loader
    runs, then its connect is wrapped (before function code can call it)."""

    def __init__(self, hooks: ConnectHooks) -> None:
        self.hooks = hooks

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        driver = BY_MODULE.get(name)
        if driver is None or not driver.connects:
            return None
        spec: ModuleSpec | None = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        execute = getattr(loader, "exec_module", None)
        if spec is None or execute is None:
            return spec
        hooks = self.hooks

        def exec_module(module: ModuleType) -> None:
            try:
                execute(module)
            finally:
                # The loader is the module's own: it is left as it was.
                with contextlib.suppress(AttributeError):
                    del loader.exec_module  # type: ignore[union-attr]
            hooks.wrap(driver, module)

        loader.exec_module = exec_module  # type: ignore[union-attr]
        return spec


CONNECT_HOOKS = ConnectHooks()
