"""Placeholders in a function's ``env`` values: ``{es_url}``, ``{proxy:NAME}``, ...

The names come from whoever supplies them (the services' fixtures, ``tcp_proxy``): this
module knows none of them.

A placeholder is a name in single braces: an identifier (``{es_url}``) or
``{proxy:NAME}``. Anything else in braces (JSON, say) is left exactly as written, and
``{{name}}`` stands for the literal text ``{name}``. A placeholder that nothing
supplies is an error that names it, the known ones, and the nearest of them.

Values are filled in when an environment is created, so a ``tcp_proxy`` made after
the function (but before its first invocation) is found.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping

__all__ = ["PROXY_PREFIX", "SERVICE_FIELDS", "check_placeholders", "fill_placeholders"]

Suppliers = Mapping[str, Callable[[], str]]

PROXY_PREFIX = "proxy:"
# A service fixture's placeholders: {NAME_url}, {NAME_host}, ... (es, postgres, ...).
# What a service's placeholders end in ({postgres_url}, {es_index_prefix}, {redis_ca}).
SERVICE_FIELDS = ("url", "host", "port", "user", "password", "db", "ca", "index_prefix")
_SERVICE = re.compile(r"[A-Za-z][A-Za-z0-9_]*_(" + "|".join(SERVICE_FIELDS) + ")")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*|proxy:[^{}\s]*"
_TOKEN = re.compile(r"\{\{(" + _NAME + r")\}\}|\{(" + _NAME + r")\}")


def _names(value: str) -> list[str]:
    return [m.group(2) for m in _TOKEN.finditer(value) if m.group(2) is not None]


def check_placeholders(
    env: Mapping[str, str], suppliers: Suppliers, *, services_later: bool = False
) -> None:
    """Raise ValueError for a placeholder in ``env`` that can never be filled.

    ``{proxy:NAME}`` is checked when filled: the proxy may be made later. With
    ``services_later``, so are a service's (``{postgres_url}``): its fixture is not
    wired in yet.
    """
    for key, value in env.items():
        for name in _names(value):
            if name.startswith(PROXY_PREFIX) or name in suppliers:
                continue
            if not (services_later and _SERVICE.fullmatch(name)):
                raise ValueError(_unknown(key, value, name, suppliers))


def fill_placeholders(env: Mapping[str, str], suppliers: Suppliers) -> dict[str, str]:
    """``env`` with every placeholder replaced by its value (ValueError if unknown)."""
    filled = {}
    for key, value in env.items():

        def replace(match: re.Match[str], key: str = key, value: str = value) -> str:
            if match.group(1) is not None:
                return "{" + match.group(1) + "}"  # {{name}}: the literal text
            name = match.group(2)
            supplier = suppliers.get(name)
            if supplier is None:
                raise ValueError(_unknown(key, value, name, suppliers))
            return supplier()

        filled[key] = _TOKEN.sub(replace, value)
    return filled


def _unknown(key: str, value: str, name: str, suppliers: Suppliers) -> str:
    known = sorted(suppliers)
    shown = ", ".join("{" + k + "}" for k in known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {{{close[0]}}}? " if close else ""
    start = f"env[{key!r}] = {value!r} uses {{{name}}}"
    if name.startswith(PROXY_PREFIX):
        proxy = name[len(PROXY_PREFIX) :]
        return (
            f"{start}, but this test has no tcp_proxy named {proxy!r}: {hint}make one before "
            f"the first invocation, tcp_proxy(host, port, name={proxy!r}) (known: {shown or 'none'}); "
            "lambda_env makes its environment when it is set up: make the proxy in a fixture "
            "of the test, not in its body"
        )
    service = ""
    if _SERVICE.fullmatch(name):
        owner = name.removesuffix("_index_prefix").rpartition("_")[0] or name
        service = (
            f"; {{{name}}} would come from a service fixture named {owner!r} (es, postgres, "
            "mysql, redis, or one made by factories.datastore), which is not in use here: "
            "the plugin fills a service's placeholders only in functions that its fixtures "
            "make (lambda_function, make_lambda_function, factories.lambda_function)"
        )
    return (
        f"{start}, an unknown placeholder: {hint}known ones are {shown or 'none'} and "
        f"{{proxy:NAME}} for a tcp_proxy named NAME; write {{{{{name}}}}} for the literal "
        f"text {{{name}}}{service}"
    )
