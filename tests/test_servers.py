"""The real servers the PostgreSQL and Redis tests run against (examples/servers.py)."""

from __future__ import annotations

import pytest
from conftest import servers


def test_postgresql_answers_a_query(postgres_url: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select 1 + 1").fetchone() == (2,)
        version = conn.execute("show server_version_num").fetchone()
    assert version is not None and int(version[0]) >= 150000


def test_redis_answers_a_command(redis_url: str) -> None:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
        assert client.config_get("save") == {"save": ""}
    finally:
        client.close()


def test_missing_server_skips_with_its_reason_and_fails_on_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        f"""
        import importlib.util, sys, pytest
        spec = importlib.util.spec_from_file_location("s", {servers.__file__!r})
        servers = importlib.util.module_from_spec(spec); spec.loader.exec_module(servers)

        def missing():
            raise servers.ServerUnavailable("needs redis-server on PATH: apt-get install redis-server")

        @pytest.fixture
        def url():
            yield from servers.server_or_skip(missing)
        """
    )
    pytester.makepyfile("def test_it(url): pass")
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs redis-server on PATH: apt-get install redis-server*"])
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI=true: tests that need it must not skip*"])
