"""Shared fixtures of the example tests."""

import pytest
import servers


@pytest.fixture
def docs_index(es):
    """An index with three documents; its name is under the session's prefix
    (es.index_name), the only indices the plugin creates on a shared cluster."""
    index = es.index_name("docs")
    client = es.client()  # test-side: not counted
    if client.indices.exists(index=index):
        client.indices.delete(index=index)
    for n, title in enumerate(["cold start", "warm start", "frozen environment"]):
        client.index(index=index, id=str(n), document={"title": title})
    client.indices.refresh(index=index)
    return index


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL for the session (examples/servers.py): its URL."""
    yield from servers.server_or_skip(servers.postgres_server)


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis for the session (examples/servers.py): its URL."""
    yield from servers.server_or_skip(servers.redis_server)


@pytest.fixture
def postgres(tcp_proxy, postgres_url):
    """A counting proxy in front of the session's PostgreSQL, named for {proxy:postgres}.

    libpq (psycopg, psycopg2) connects in C, so the proxy is what counts its connections;
    like an AWS NAT gateway it resets connections idle for 350 s (see idle())."""
    address = postgres_url.split("@", 1)[1].split("/", 1)[0]
    host, port = address.rsplit(":", 1)
    return tcp_proxy(host, int(port), name="postgres")


@pytest.fixture
def redis_proxy(tcp_proxy, redis_url):
    """A counting proxy in front of the session's Redis, named for {proxy:redis}."""
    address = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = address.rsplit(":", 1)
    return tcp_proxy(host, int(port), name="redis")
