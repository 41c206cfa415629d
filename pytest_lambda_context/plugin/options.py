"""Every option, declared once: command line ``--lambda-…`` and ini ``lambda_…``.

Imported when pytest starts, in every session: nothing else of the package is imported
here at load (a check imports what it needs when a value is given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from pytest_lambda_context.environments.registry import ISOLATIONS
from pytest_lambda_context.services.datastores.registry import DATASTORES

__all__ = ["OPTIONS", "RESOLVED", "Option", "package_names", "register", "resolve_all"]

# The session's resolved options (set at configure, read when the plugin is first used).
RESOLVED: pytest.StashKey[dict[str, str | None]] = pytest.StashKey()


@dataclass(frozen=True)
class Option:
    name: str  # the ini name; the command line flag is derived from it
    help: str
    choices: tuple[str, ...] | None = None
    default: str | None = None
    # Given a non-empty value: what is wrong with it (naming it), or None if it is good.
    check: Callable[[str], str | None] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _http_url(value: str) -> str | None:
    """An http(s) URL with a host (and, if any, a port that is a number)."""
    from pytest_lambda_context.services.urls import without_password

    # Named in the error, so without its password.
    shown = without_password(value)
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        return f"{shown!r} is not a URL; expected http(s)://host:port"
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if "://" not in value:
        problem = "is not a URL"
    elif parts.scheme not in ("http", "https"):
        problem = "is not an http or https URL"
    elif not parts.hostname:
        problem = "has no host"
    elif not port_ok:
        problem = "has a port that is not a number from 1 to 65535"
    else:
        return None
    return f"{shown!r} {problem}; expected http(s)://host:port"


def package_names(value: str) -> list[str]:
    """``lambda_fresh_packages``: names separated by white space or commas."""
    return value.replace(",", " ").split()


def _handler(value: str) -> str | None:
    from pytest_lambda_context.environments.config import check_handler

    try:
        check_handler(value)
    except ValueError as exc:
        return str(exc)
    return None


def _package_names(value: str) -> str | None:
    from pytest_lambda_context.environments.config import check_fresh_packages

    try:
        check_fresh_packages(package_names(value))
    except ValueError as exc:
        return str(exc)
    return None


def _seed(value: str) -> str | None:
    if not value.isdigit():
        return f"{value!r} is not a seed: give a whole number, such as --lambda-chaos=1234"
    return None


def _datastore_url(name: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        from pytest_lambda_context.services.datastores.registry import kind
        from pytest_lambda_context.services.urls import without_password

        try:
            kind(name).parse_url(value)
        except ValueError as exc:
            return f"{without_password(value)!r}: {exc}"
        return None

    return check


def _datastore_options() -> tuple[Option, ...]:
    """``lambda_NAME``, ``lambda_NAME_url`` and ``lambda_NAME_image`` for each registered
    datastore."""
    made: list[Option] = []
    for name in DATASTORES:
        made.append(
            Option(
                f"lambda_{name}",
                f"Server of the {name} fixture: auto (url if a URL is given, else a "
                "container if a Docker engine answers and has or can pull the image, else "
                "the machine's binaries), local, container or url.",
                ("auto", "local", "container", "url"),
                "auto",
            )
        )
        made.append(
            Option(
                f"lambda_{name}_tls",
                f"on: the {name} fixture's local server serves TLS with a self-signed "
                f"certificate ({{{name}_ca}} in env is its path).",
                ("off", "on"),
                "off",
            )
        )
        made.append(
            Option(
                f"lambda_{name}_image",
                f"Image for the {name} fixture's container backend (default: the official "
                "image of a pinned major version).",
            )
        )
        made.append(
            Option(
                f"lambda_{name}_url",
                f"URL of an existing server for the {name} fixture (backend url).",
                check=_datastore_url(name),
            )
        )
    return tuple(made)


def _report_file(example: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        """A file to write, not a folder (written relative to the current directory)."""
        import os

        if value.endswith(("/", os.sep)) or os.path.isdir(value):
            return f"{value!r} is a folder; give the file to write, e.g. {example}"
        return None

    return check


OPTIONS: tuple[Option, ...] = (
    Option(
        "lambda_es",
        "Elasticsearch backend: auto (url if a URL is given, container if Docker answers, "
        "else embedded), container, embedded or url.",
        ("auto", "container", "embedded", "url"),
        "auto",
    ),
    Option(
        "lambda_es_url",
        "URL of an existing Elasticsearch cluster (backend url), e.g. http://localhost:9200.",
        check=_http_url,
    ),
    Option("lambda_es_image", "Image for the container backend."),
    Option(
        "lambda_isolation",
        "Default isolation of execution environments: "
        + " or ".join(f"{i.name} ({i.summary})" for i in ISOLATIONS.values())
        + ".",
        tuple(ISOLATIONS),
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
        check=_handler,
    ),
    Option(
        "lambda_report",
        "Write a JSON report of every function, environment and invocation to this file.",
        check=_report_file("--lambda-report=lambda-report.json"),
    ),
    Option(
        "lambda_html",
        "Write a self-contained HTML report to this file: per function, a timeline of its "
        "execution environments, invocations and connections.",
        check=_report_file("--lambda-html=lambda-report.html"),
    ),
    Option(
        "lambda_network",
        "Where function code may connect: allow (anywhere) or loopback (127.0.0.0/8 and ::1 "
        "only). Default: loopback with the aws fixture, else allow.",
        ("allow", "loopback"),
    ),
    Option(
        "lambda_fresh_packages",
        "More third-party packages imported afresh for each environment in module "
        "isolation (names separated by spaces or commas), besides the default "
        "aws_lambda_powertools and aws_embedded_metrics.",
        check=_package_names,
    ),
    Option(
        "lambda_chaos",
        "Chaos routing with this seed (a whole number): invoke and invoke_many send each "
        "request to any idle environment or to a new one, and recycle idle ones, legally "
        "but adversarially; the same seed replays the same routing.",
        check=_seed,
    ),
    *_datastore_options(),
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


def _resolve(config: pytest.Config, option: Option) -> str | None:
    given: object = config.getoption(option.name)
    if given is None:
        given = config.getini(option.name)
        # An ini option that is absent reads as None or "", depending on pytest's version.
        if given is None or given == "":
            given = option.default
    # Every option is text (declared without a type): the command line's and the ini's.
    value = None if given is None else str(given).strip()
    if option.choices is not None and value is not None and value not in option.choices:
        raise pytest.UsageError(
            f"{option.flag} / ini {option.name}: {value!r} is not valid; "
            f"choose one of: {', '.join(option.choices)}"
        )
    # An empty value (`--lambda-es-url=` from an unset variable) reads as not given.
    problem = option.check(value) if option.check is not None and value else None
    if problem is not None:
        raise pytest.UsageError(f"{option.flag} / ini {option.name}: {problem}")
    return value


def resolve_all(config: pytest.Config) -> dict[str, str | None]:
    """Command line if given, else ini, else default; bad values are a usage error."""
    return {option.name: _resolve(config, option) for option in OPTIONS}
