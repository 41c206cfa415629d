"""Network drivers that connect in C: invisible to the socket layer and to the guard.

Their connections are counted only when they reach one of the plugin's proxies
(``tcp_proxy``, ``es``); ``lambda_network = loopback`` cannot stop them. Listed are the
C-level drivers common in Lambda functions; the pure-Python ones (pg8000, asyncpg,
PyMySQL, redis-py, pymongo, kafka-python, the oracledb thin mode, httpx, requests,
boto3) go through Python's sockets and are seen there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType

__all__ = [
    "C_DRIVERS",
    "CDriver",
    "DriverWatch",
    "DriversLoaded",
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

    def env_example(self) -> str:
        return self.example or "{proxy:" + self.proxy_name + "}"


C_DRIVERS = (
    CDriver(
        "psycopg", "psycopg (libpq)", "PostgreSQL", 5432, "postgres",
        "postgresql://USER@{proxy:postgres}/DBNAME",
    ),
    CDriver(
        "psycopg2", "psycopg2 (libpq)", "PostgreSQL", 5432, "postgres",
        "postgresql://USER@{proxy:postgres}/DBNAME",
    ),
    CDriver("MySQLdb", "mysqlclient (libmysqlclient)", "MySQL", 3306, "mysql"),
    CDriver("confluent_kafka", "confluent-kafka (librdkafka)", "Kafka", 9092, "kafka"),
    CDriver("grpc", "grpcio (gRPC C core)", "the gRPC server", 50051, "grpc"),
    CDriver("pycurl", "pycurl (libcurl)", "the HTTP server", 80, "http", "http://{proxy:http}/"),
    CDriver("pymssql", "pymssql (FreeTDS)", "SQL Server", 1433, "mssql"),
    CDriver("pyodbc", "pyodbc (ODBC)", "the database", 1433, "odbc"),
    CDriver("cx_Oracle", "cx_Oracle (Oracle Client)", "Oracle", 1521, "oracle"),
)  # fmt: skip
BY_MODULE = {driver.module: driver for driver in C_DRIVERS}


@dataclass(frozen=True)
class DriversLoaded:
    """An event in a scope: these C-level drivers are loaded where function code runs."""

    modules: tuple[str, ...]


class DriverWatch:
    """Notices C-level drivers as they get loaded (checked only when modules were added)."""

    def __init__(self) -> None:
        self._module_count = -1
        self._seen: frozenset[str] = frozenset()

    def news(self) -> list[DriversLoaded]:
        """A ``DriversLoaded`` event if a driver was loaded since the last call."""
        count = len(sys.modules)
        if count == self._module_count:
            return []
        self._module_count = count
        names = frozenset(driver.module for driver in loaded_c_drivers())
        if names <= self._seen:
            return []
        self._seen |= names
        return [DriversLoaded(tuple(sorted(self._seen)))]


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
    """Which C-level drivers an environment of module isolation uses.

    Its process is the test process, whose ``sys.modules`` also holds what the tests
    and other functions imported; so a driver counts as this environment's when one
    of its calls imported it, or when the function's own modules refer to it: the
    driver's module or an object of it in their globals, or SQLAlchemy (whose
    dialects load the driver on their own) while the driver is loaded.
    """

    def __init__(self) -> None:
        self._seen: frozenset[str] = frozenset()

    def news(
        self, imported: Iterable[str], own_modules: Iterable[ModuleType]
    ) -> list[DriversLoaded]:
        found = {name.partition(".")[0] for name in imported} & set(BY_MODULE)
        found |= _referenced(own_modules)
        names = frozenset(found)
        if names <= self._seen:
            return []
        self._seen |= names
        return [DriversLoaded(tuple(sorted(self._seen)))]


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
