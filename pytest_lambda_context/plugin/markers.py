"""Marker signatures: registered with pytest and used to validate marker arguments.

Each marker is described by a function with its signature; calling the function
with the marker's arguments validates them, so a wrong one says the right form.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "MARKERS",
    "closest_start",
    "explain_unknown_marker",
    "item_errors",
    "marker_arguments",
    "marker_lines",
    "near_miss",
    "validate_items",
]

_PER = ("environment", "invocation", "warm", "test")


def lambda_handler(handler: str, **config: Any) -> dict[str, Any]:
    """The form only; the values are checked at collection by building the function's
    config (``PluginState.check_function``), with the session's defaults."""
    if not isinstance(handler, str):
        raise TypeError(
            f"the handler must be a string such as 'app.search.handler', not {handler!r}"
        )
    from pytest_lambda_context.environments.function_config import MARKER_OPTIONS

    unknown = sorted(set(config) - set(MARKER_OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(MARKER_OPTIONS)}"
        )
    return {"handler": handler, **config}


def cold_start() -> dict[str, Any]:
    return {}


def warm_start() -> dict[str, Any]:
    return {}


def max_connections(
    n: int,
    *,
    per: str = "environment",
    via: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> dict[str, Any]:
    _check_limit(n, per)
    if port is not None:
        from pytest_lambda_context.environments.config import check_number

        check_number("port", port, minimum=1, maximum=65535, integer=True)
    if host is not None:
        _check_host(host)
    if via is not None:
        _check_via(via)
    return {"n": n, "per": per, "via": via, "host": host, "port": port}


def _check_host(host: object) -> None:
    """A bare host name or IP: a URL or host:port would match no connection, silently."""
    if not isinstance(host, str):
        raise TypeError(f"host must be a string such as '127.0.0.1', not {host!r}")
    bare = "a bare host name or IP address such as host='127.0.0.1' or host='db.internal'"
    if not host.strip():
        raise ValueError(f"host={host!r} is empty; give {bare}")
    if "\x00" in host or any(c.isspace() for c in host):
        raise ValueError(f"host={host!r} has a NUL byte or white space; give {bare}")
    if "://" in host:
        rest = host.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        raise ValueError(
            f"host={host!r} is a URL; give the bare host, host={_without_port(rest)!r}"
            + _port_hint(rest)
        )
    if "/" in host:
        raise ValueError(f"host={host!r} has a path; give {bare}")
    if _is_ipv6(host):
        return
    if host.startswith("[") or ":" in host:
        raise ValueError(
            f"host={host!r} has a port; write host={_without_port(host)!r}" + _port_hint(host)
        )


def _is_ipv6(text: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def _without_port(text: str) -> str:
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text if _is_ipv6(text) else text.rsplit(":", 1)[0]


def _port_hint(text: str) -> str:
    if _is_ipv6(text) or ":" not in text:
        return ""
    port = text.rsplit(":", 1)[1]
    return f", port={int(port)}" if port.isdigit() else ""


def _check_via(via: object) -> None:
    if not isinstance(via, str) or not via or "\x00" in via or re.search(r"[{}\s]", via):
        raise TypeError(
            f"via={via!r} is not a service or proxy name; give one such as via='postgres' "
            "(es, postgres, mysql, redis, aws, or a tcp_proxy's name)"
        )


def max_clients(n: int, *, per: str = "environment", service: str | None = None) -> dict[str, Any]:
    _check_limit(n, per)
    if service is not None:
        _check_service(service)
    return {"n": n, "per": per, "service": service}


def _check_service(service: object) -> None:
    """A misspelt service would match no client and let the limit pass silently."""
    if not isinstance(service, str):
        raise TypeError(f"service must be a string such as 'dynamodb', not {service!r}")
    try:
        import botocore.session
    except ImportError:  # nothing to check against; the aws extra is not installed
        return
    known = _known_services(botocore.session)
    if service not in known:
        close = difflib.get_close_matches(service, known, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"service={service!r} is not a boto3 service name{hint}")


@functools.cache
def _known_services(session_module: Any) -> frozenset[str]:
    return frozenset(session_module.get_session().get_available_services())


def docker() -> dict[str, Any]:
    return {}


def lambda_chaos(seed: int | None = None) -> dict[str, Any]:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise TypeError(f"seed must be a whole number >= 0 or None, not {seed!r}")
    return {"seed": seed}


def _check_limit(n: object, per: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TypeError(f"n must be a whole number >= 0, not {n!r}")
    if per not in _PER:
        raise TypeError(f"per={per!r} is not valid; choose one of: {', '.join(_PER)}")


MARKERS: dict[str, tuple[Callable[..., dict[str, Any]], str]] = {
    "lambda_handler": (lambda_handler, "which handler, and LambdaFunction options"),
    "cold_start": (cold_start, "lambda_env is a new execution environment (the default)"),
    "warm_start": (warm_start, "lambda_env is the environment earlier tests of this module warmed"),
    "max_connections": (
        max_connections,
        "fail when an environment/invocation/the test opened more than n connections",
    ),
    "max_clients": (max_clients, "fail when function code created more than n boto3 clients"),
    "docker": (docker, "the test needs a Docker engine; skipped when none answers"),
    "lambda_chaos": (
        lambda_chaos,
        "route invoke/invoke_many adversarially (any idle environment or a new one, idle "
        "ones recycled), reproducibly; seed=None: the session's seed",
    ),
}


def _signature(function: Callable[..., Any]) -> str:
    """``(n, *, per='environment')``: the form users write, without annotations."""
    signature = inspect.signature(function)
    plain = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=plain, return_annotation=inspect.Signature.empty))


def marker_lines() -> list[str]:
    """``name(signature): what it does``, one per marker (the entry module registers a
    copy of these, so that a session need not import this module)."""
    return [f"{name}{_signature(function)}: {text}" for name, (function, text) in MARKERS.items()]


def marker_arguments(marker: pytest.Mark) -> dict[str, Any]:
    """The marker's arguments, validated by calling its signature function."""
    signature_of = MARKERS[marker.name][0]
    try:
        return signature_of(*marker.args, **marker.kwargs)
    except (TypeError, ValueError) as exc:
        signature = _signature(signature_of)
        raise pytest.UsageError(
            f"@pytest.mark.{marker.name}: {_sentence(str(exc))} "
            f"The form is @pytest.mark.{marker.name}{signature}"
        ) from None


def _check_values(
    marker: pytest.Mark, arguments: dict[str, Any], item: pytest.Item, check: FunctionCheck
) -> None:
    try:
        check(item, arguments)
    except (TypeError, ValueError) as exc:
        message = str(exc)
    else:
        return
    # Outside the except block: the message alone, no chained traceback.
    signature = _signature(MARKERS[marker.name][0])
    raise pytest.UsageError(
        f"@pytest.mark.{marker.name}: {_sentence(message)} "
        f"The form is @pytest.mark.{marker.name}{signature}"
    )


def _sentence(text: str) -> str:
    """The text ending in one full stop ("did you mean 'dynamodb'?" keeps its "?")."""
    return text if text.endswith((".", "?", "!")) else text + "."


def near_miss(name: str) -> str | None:
    """Which of the plugin's markers ``name`` was probably meant to be, if any.

    ``max_connection``, ``coldstart``, ``lambda_handlers``, ``Max_Connections``: the same
    letters up to case, underscores and a plural, or one letter or two away.
    """
    if name in MARKERS:
        return None

    def squashed(text: str) -> str:
        return text.replace("_", "").replace("-", "").lower().removesuffix("s")

    for ours in MARKERS:
        if squashed(name) == squashed(ours):
            return ours
    close = difflib.get_close_matches(name.lower(), list(MARKERS), n=1, cutoff=0.85)
    return close[0] if close else None


def misspelt(name: str) -> str:
    right = near_miss(name)
    return (
        f"@pytest.mark.{name} is not a marker; did you mean @pytest.mark.{right}? "
        "(a misspelt marker would silently do nothing)"
    )


# Checks a lambda_handler marker's values as the function would be made for the test
# (the session's defaults under them); TypeError or ValueError saying what is wrong.
FunctionCheck = Callable[[pytest.Item, dict[str, Any]], None]


def item_errors(
    item: pytest.Item,
    registered: AbstractSet[str] = frozenset(),
    check_function: FunctionCheck | None = None,
) -> list[str]:
    """What is wrong with this test's plugin markers, one line each."""
    errors = []
    for marker in item.iter_markers():
        if marker.name not in registered and near_miss(marker.name):
            errors.append(f"{item.nodeid}: {misspelt(marker.name)}")
        elif marker.name in MARKERS:
            try:
                arguments = marker_arguments(marker)
                if marker.name == "lambda_handler" and check_function is not None:
                    _check_values(marker, arguments, item, check_function)
            except pytest.UsageError as exc:
                errors.append(f"{item.nodeid}: {exc}")
    own = {marker.name for marker in item.own_markers}
    if {"cold_start", "warm_start"} <= own:
        errors.append(f"{item.nodeid}: marked both cold_start and warm_start; keep one of them")
    return errors


def validate_items(
    items: list[pytest.Item],
    uses_plugin: Callable[[pytest.Item], bool],
    registered: AbstractSet[str],
    check_function: FunctionCheck | None = None,
) -> None:
    """Report every bad marker of the tests that use the plugin at once, so one run shows
    them all. On a test that does not use it, a near-miss name is a warning naming the
    nearest (as pytest's own for an unknown marker), and nothing else is checked: a
    project's own marker that shares a name with ours is its own business."""
    errors: list[str] = []
    seen: set[str] = set()
    for item in items:
        if not uses_plugin(item):
            _warn_near_misses(item, registered, seen)
            continue
        for error in item_errors(item, registered, check_function):
            # A module- or class-level marker is wrong once, not once per test.
            problem = error.partition(": ")[2]
            if problem not in seen:
                seen.add(problem)
                errors.append(error)
    if errors:
        raise pytest.UsageError("\n".join(errors))


def _warn_near_misses(item: pytest.Item, registered: AbstractSet[str], seen: set[str]) -> None:
    for marker in item.iter_markers():
        if marker.name in registered or marker.name in seen:
            continue
        right = near_miss(marker.name)
        if right is not None:
            seen.add(marker.name)
            item.warn(
                pytest.PytestUnknownMarkWarning(
                    f"Unknown pytest.mark.{marker.name}; did you mean "
                    f"pytest.mark.{right} of pytest-lambda-context? (on a test that uses "
                    "the plugin this is an error)"
                )
            )


def closest_start(item: pytest.Item) -> str | None:
    """ "cold" or "warm" from the nearest cold_start/warm_start marker (test over module)."""
    for marker in item.iter_markers():
        if marker.name in ("cold_start", "warm_start"):
            return marker.name.partition("_")[0]
    return None


_UNKNOWN = (
    # pytest's words for an unregistered marker: with --strict-markers, and its warning
    # (an error under filterwarnings = error), raised while the test module is imported.
    re.compile(r"'(\w+)' not found in `markers` configuration option"),
    re.compile(r"Unknown pytest\.mark\.(\w+) - is this a typo\?"),
)


def explain_unknown_marker(report: pytest.CollectReport, path: Path | None) -> None:
    """A module that failed to import over a misspelt plugin marker says which one was meant."""
    if not report.failed:
        return
    text = str(report.longrepr)
    for pattern in _UNKNOWN:
        found = pattern.search(text)
        if found and near_miss(found.group(1)):
            name = found.group(1)
            report.longrepr = f"{_where(report.nodeid, path, name)}: {misspelt(name)}"
            return


def _where(nodeid: str, path: Path | None, name: str) -> str:
    """``test_a.py:7``: the first line of the module that uses the marker."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path else []
    except (OSError, UnicodeDecodeError):
        lines = []
    for number, line in enumerate(lines, start=1):
        if re.search(rf"\bmark\.{re.escape(name)}\b", line):
            return f"{nodeid}:{number}"
    return nodeid
