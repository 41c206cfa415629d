"""The example project's PostgreSQL anti-pattern fails with the message users are told
about (examples/tests/test_pg_per_invocation.py marks it a strict xfail)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end, the same on every Python and pytest

ROOT = Path(__file__).resolve().parent.parent


def test_a_connection_per_invocation_fails_naming_each_one(
    pytester: pytest.Pytester, postgres_url: str
) -> None:
    shutil.copytree(
        ROOT / "examples",
        pytester.path,
        ignore=shutil.ignore_patterns("__pycache__", "*.json", "*.html"),
        dirs_exist_ok=True,
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--runxfail",
        "--lambda-es=embedded",
        "tests/test_pg_per_invocation.py::test_a_connection_per_invocation_fails",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.max_connections(1) exceeded by function db_app-per_invocation "
            "(db_app.per_invocation.handler):",
            "*env-1 created 5 connections (limit 1):",
            "*- env-1 invocation 1 (*): 127.0.0.1:* through proxy 'postgres' opened at "
            "db_app/per_invocation.py:9 in handler",
            "*Hint: build the client once per execution environment*",
        ]
    )
