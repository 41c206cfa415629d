"""Every option, declared once: command line ``--lambda-…`` and ini ``lambda_…``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

__all__ = ["OPTIONS", "Option", "register", "resolve_all"]


@dataclass(frozen=True)
class Option:
    name: str  # the ini name; the command line flag is derived from it
    help: str
    choices: tuple[str, ...] | None = None
    default: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option(
        "lambda_es",
        "Elasticsearch backend: auto (url if a URL is given, container if Docker answers, "
        "else embedded), container, embedded or url.",
        ("auto", "container", "embedded", "url"),
        "auto",
    ),
    Option("lambda_es_url", "URL of an existing Elasticsearch cluster (backend url)."),
    Option("lambda_es_image", "Image for the container backend."),
    Option(
        "lambda_isolation",
        "Default isolation of execution environments: module (in-process) or process.",
        ("module", "process"),
        "module",
    ),
    Option(
        "lambda_start",
        "What lambda_env gives a test without a cold_start/warm_start marker.",
        ("cold", "warm"),
        "cold",
    ),
    Option(
        "lambda_handler",
        "Default handler for the lambda_function fixture, e.g. app.search.handler.",
    ),
    Option(
        "lambda_report", "Write a JSON report of every function, environment and invocation here."
    ),
    Option(
        "lambda_network",
        "Where function code may connect: allow (anywhere) or loopback (127.0.0.0/8 and ::1 "
        "only). Default: loopback with the aws fixture, else allow.",
        ("allow", "loopback"),
    ),
)


def register(parser: pytest.Parser) -> None:
    group = parser.getgroup("lambda-context", "AWS Lambda execution environments")
    for option in OPTIONS:
        choices = f" One of: {', '.join(option.choices)}." if option.choices else ""
        default = f" Default: {option.default}." if option.default else ""
        group.addoption(
            option.flag, dest=option.name, default=None, help=option.help + choices + default
        )
        parser.addini(option.name, option.help + choices + default, default=None)


def _resolve(config: pytest.Config, option: Option) -> Any:
    value = config.getoption(option.name)
    if value is None:
        value = config.getini(option.name)
        # An ini option that is absent reads as None or "", depending on pytest's version.
        if value is None or value == "":
            value = option.default
    if isinstance(value, str):
        value = value.strip()
    if option.choices is not None and value is not None and value not in option.choices:
        raise pytest.UsageError(
            f"{option.flag} / ini {option.name}: {value!r} is not valid; "
            f"choose one of: {', '.join(option.choices)}"
        )
    return value


def resolve_all(config: pytest.Config) -> dict[str, Any]:
    """Command line if given, else ini, else default; bad values are a usage error."""
    return {option.name: _resolve(config, option) for option in OPTIONS}
