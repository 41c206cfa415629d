"""A function's settings, checked as Lambda checks them, and where its code lives."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping

from pytest_lambda_context.environments.registry import ISOLATIONS, Isolation
from pytest_lambda_context.runtime.context import refuse_reserved

__all__ = [
    "NETWORK_POLICIES",
    "check_code_root",
    "check_env",
    "check_fresh_packages",
    "check_function_name",
    "check_number",
    "check_region",
    "find_fresh_packages",
]

NETWORK_POLICIES = ("allow", "loopback")
_VARIABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_THIRD_PARTY = ("site-packages", "dist-packages")
# Lambda's FunctionName (a plain name: no ARN) and its AWS region names.
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
# Lambda's Handler setting: at most 128 characters, no white space.
_HANDLER = re.compile(r"\S{1,128}")


# Third-party packages that keep per-environment state in their own modules, imported
# afresh for each environment in module isolation (see docs/concepts/lifecycle.md):
# powertools' Logger cold-start flag and caches; aws-embedded-metrics' configuration
# (read from the environment's variables at import) and its resolved-environment cache.
# Not datadog_lambda: its import patches http.client and requests, shared modules, so
# a fresh import per environment would stack one patch per environment on them.
DEFAULT_FRESH_PACKAGES = ("aws_lambda_powertools", "aws_embedded_metrics")
# What can never be imported afresh: the interpreter's own modules, and the tools
# running the test.
_NEVER_FRESH = frozenset({"pytest", "_pytest", "pluggy", "pytest_lambda_context"})


# The checks below take an option as the user gave it: typed ``object`` where they
# check its type, and as the option's form where they check its items (iterating
# something else fails with Python's own TypeError).
def check_fresh_packages(fresh_packages: Iterable[str] | None) -> tuple[str, ...]:
    """``fresh_packages``: None or top-level package names (their form; see
    :func:`find_fresh_packages` for whether they are installed)."""
    if fresh_packages is None:
        return ()
    if isinstance(fresh_packages, str) or not all(isinstance(name, str) for name in fresh_packages):
        raise TypeError(
            f"fresh_packages={fresh_packages!r}: give a list of top-level package names, "
            "such as fresh_packages=['my_lambda_toolkit']"
        )
    names = tuple(fresh_packages)
    for name in names:
        if not name.isidentifier():
            top = name.partition(".")[0]
            hint = f"the top-level package {top!r}" if "." in name and top else "a package name"
            raise ValueError(
                f"fresh_packages: {name!r} is not a top-level package name; give {hint}"
            )
        if name in sys.stdlib_module_names or name in _NEVER_FRESH:
            raise ValueError(
                f"fresh_packages: {name!r} cannot be imported afresh per environment (it is "
                "part of Python or of the test run); use isolation='process' to give each "
                "environment its own"
            )
    return names


def find_fresh_packages(fresh_packages: Iterable[str] | None, code_root: str) -> frozenset[str]:
    """The default packages and ``fresh_packages``; each of these must be importable."""
    names = check_fresh_packages(fresh_packages)
    for name in names:
        if importlib.util.find_spec(name) is None and not _in_folder(name, code_root):
            raise ValueError(
                f"fresh_packages: no package named {name!r} can be imported; check the "
                "spelling, or install it in the environment that runs pytest"
            )
    return frozenset((*DEFAULT_FRESH_PACKAGES, *names))


def _in_folder(name: str, folder: str) -> bool:
    return os.path.isdir(os.path.join(folder, name)) or os.path.isfile(
        os.path.join(folder, name + ".py")
    )


# What function code sees of the test process's own variables without inherit_env.
ALWAYS_INHERITED = ("PATH", "LANG")


def check_inherit_env(inherit_env: Iterable[str] | bool | None) -> tuple[str, ...] | bool:
    """``inherit_env``: None, True (every variable) or names; the names it stands for."""
    if inherit_env is None or inherit_env is False:
        return ()
    if inherit_env is True:
        return True
    if isinstance(inherit_env, str) or not all(isinstance(n, str) for n in inherit_env):
        raise TypeError(
            f"inherit_env={inherit_env!r}: give a list of variable names, such as "
            "inherit_env=['DATABASE_URL'], or True for every variable of the test process"
        )
    return tuple(inherit_env)


def check_execution_model(
    isolation: Isolation, snap_start: object, per_environment_concurrency: object
) -> None:
    """SnapStart and Lambda Managed Instances: only where the isolation can (process
    isolation), and not both."""
    if not isinstance(snap_start, bool):
        raise TypeError(f"snap_start must be True or False, not {snap_start!r}")
    if per_environment_concurrency is not None:
        check_number(
            "per_environment_concurrency", per_environment_concurrency, minimum=1, integer=True
        )
    if snap_start and not isolation.can_snapshot:
        model: str | None = "snap_start=True"
        able = [i.name for i in ISOLATIONS.values() if i.can_snapshot]
    elif per_environment_concurrency is not None and not isolation.can_run_many_runtimes:
        model = f"per_environment_concurrency={per_environment_concurrency}"
        able = [i.name for i in ISOLATIONS.values() if i.can_run_many_runtimes]
    else:
        model = None
    if model is not None:
        raise ValueError(
            f"{model} needs isolation={able[0]!r}: a restore from a snapshot and the runtime "
            "processes of an environment are forks of worker processes, which "
            f"{isolation.name} isolation does not have. Use isolation={able[0]!r} "
            f"(or --lambda-isolation={able[0]})"
        )
    if snap_start and per_environment_concurrency is not None:
        raise ValueError(
            "snap_start=True and per_environment_concurrency: Lambda Managed Instances do "
            "not support SnapStart; choose one"
        )


def check_handler(handler: object) -> str:
    """What Lambda's API takes as a Handler; whether it loads is decided at init."""
    if not isinstance(handler, str):
        raise TypeError(
            f"handler must be a string such as 'app.search.handler', not {type(handler).__name__}"
        )
    if "\0" in handler:
        raise ValueError(
            f"handler={handler!r} holds a NUL character (\\0), which no module path or "
            "name can hold; write it as 'app.search.handler' or 'app/search.handler'"
        )
    if not _HANDLER.fullmatch(handler):
        raise ValueError(
            f"handler={handler!r}: Lambda takes 1 to 128 characters without white space, "
            "such as 'app.search.handler' or 'app/search.handler'"
        )
    return handler


def check_function_name(name: object) -> str:
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        raise ValueError(
            f"function_name={name!r}: Lambda takes 1 to 64 letters, digits, hyphens or "
            "underscores, such as 'search-api'"
        )
    return name


def check_region(region: object) -> str:
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise ValueError(f"region={region!r}: expected an AWS region name such as 'eu-west-1'")
    return region


def check_code_root(code_root: object) -> str:
    """The code root as an absolute path; it must be an existing folder."""
    if not isinstance(code_root, (str, os.PathLike)):
        raise TypeError(f"code_root must be a folder path (str or os.PathLike), not {code_root!r}")
    root = os.path.abspath(os.fspath(code_root))
    if not os.path.isdir(root):
        raise ValueError(f"code_root {root!r} is not a folder")
    return root


def default_name(module_name: str, handler: str) -> str:
    """``app-search`` for ``app.search.handler``; ``app-search-lookup`` for any other name,
    so two handlers of one module are two functions."""
    if not module_name:
        return "function"
    attribute = handler.rpartition(".")[2]
    base = module_name.replace(".", "-")
    name = base if attribute == "handler" else f"{base}-{attribute}"
    # Only what Lambda takes in a function name (the handler string may hold more).
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)[:64]


def check_number(
    name: str, value: object, *, minimum: float, maximum: float | None = None, integer: bool = False
) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not isinstance(value, int))
    ):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, not {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name}=nan is not a number; give {name} as a number of seconds")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = (
            f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        )
        raise ValueError(f"{name}={value!r} is out of range: it must be {bounds}")


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise TypeError(
            f"env must be a mapping of variable names to strings, not {type(env).__name__}"
        )
    for key, value in env.items():
        if isinstance(key, str) and not _VARIABLE_NAME.fullmatch(key):
            raise ValueError(
                f"env[{key!r}]: Lambda accepts variable names of letters, digits and "
                "underscores, starting with a letter"
            )
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"env[{key!r}] = {value!r}: Lambda environment variables are strings; "
                f"write env={{{key!r}: {str(value)!r}}}"
            )
        if "\0" in value:
            raise ValueError(
                f"env[{key!r}] holds a NUL character (\\0), which no environment variable "
                "can hold; remove it from the value"
            )
    refuse_reserved(env)
    return dict(env)


def find_code_root(module_name: str, search_paths: list[str]) -> str:
    """The folder that holds the handler's top-level package (or module).

    Looked for in the search paths and the working folder, then in their ``src/``
    folders (the src layout, whose deployment package is what ``src/`` holds), then on
    ``sys.path``; else the first search path (the import then fails at init, as on
    Lambda, and the error says where the package is: see ``code_root_hint``)."""
    top = module_name.partition(".")[0]
    bases = [*search_paths, os.getcwd()]
    candidates = [
        *bases,
        *(os.path.join(base, "src") for base in bases),
        *(p or os.getcwd() for p in sys.path),
    ]
    if top:
        for base in candidates:
            if any(marker in base for marker in _THIRD_PARTY) or not os.path.isdir(base):
                continue
            if os.path.isdir(os.path.join(base, top)) or os.path.isfile(
                os.path.join(base, top + ".py")
            ):
                return os.path.abspath(base)
    return os.path.abspath(search_paths[0] if search_paths else os.getcwd())
