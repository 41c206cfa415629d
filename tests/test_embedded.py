"""The embedded Elasticsearch stand-in, over real sockets and with the real client."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import open_fds, wait_for

from pytest_lambda_context.services.elasticsearch import embedded
from pytest_lambda_context.services.elasticsearch.embedded import EmbeddedElasticsearch

elasticsearch = pytest.importorskip("elasticsearch")

STANDIN = "not supported by the pytest-lambda-context embedded Elasticsearch stand-in"

# The client majors differ in API shape; these helpers pick the form this client speaks,
# so every test runs, with the same assertions, on elasticsearch 7, 8 and 9.
ES_MAJOR: int = elasticsearch.VERSION[0]
# A 400: RequestError in 7.x, renamed BadRequestError in 8.
BAD_REQUEST: type[Exception] = (
    elasticsearch.BadRequestError if ES_MAJOR >= 8 else elasticsearch.exceptions.RequestError
)


def body_of(response: Any) -> Any:
    """The decoded body: 8+ wrap it in an ApiResponse, 7.x return it as is."""
    return response.body if ES_MAJOR >= 8 else response


def with_status(client: Any, call: Any) -> tuple[Any, int]:
    """Run call() with the client; return its result and the HTTP status of its response.

    8+ carry the status on the response's meta; 7.x drop it in the transport, so it is
    read off the connection the client sends through.
    """
    if ES_MAJOR >= 8:
        response = call()
        return response, response.meta.status
    connection = client.transport.get_connection()
    statuses: list[int] = []
    send = connection.perform_request

    def recording(*args: Any, **kwargs: Any) -> Any:
        result = send(*args, **kwargs)
        statuses.append(result[0])
        return result

    connection.perform_request = recording
    try:
        response = call()
    finally:
        del connection.perform_request  # the instance attribute; the class method again
    # The last one: a 7.x client's first call is preceded by its product check (GET /).
    return response, statuses[-1]


def bulk(client: Any, operations: list[dict[str, Any]], **kwargs: Any) -> Any:
    """client.bulk: operations= in 8+, body= in 7.x."""
    if ES_MAJOR >= 8:
        return client.bulk(operations=operations, **kwargs)
    return client.bulk(body=operations, **kwargs)


def count(client: Any, query: dict[str, Any], **kwargs: Any) -> Any:
    """client.count with a query: query= in 8+, in the body in 7.x."""
    if ES_MAJOR >= 8:
        return client.count(query=query, **kwargs)
    return client.count(body={"query": query}, **kwargs)


@pytest.fixture
def standin() -> Iterator[EmbeddedElasticsearch]:
    with EmbeddedElasticsearch() as server:
        yield server


@pytest.fixture
def client(standin: EmbeddedElasticsearch) -> Iterator[Any]:
    es_client = elasticsearch.Elasticsearch(standin.url)
    yield es_client
    es_client.close()


def request(
    server: EmbeddedElasticsearch,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh http.client connection: (status, headers, decoded body)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        payload = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        parsed = json.loads(data) if data else None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        conn.close()


def raw_exchange(server: EmbeddedElasticsearch, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


# --- lifecycle and identity -------------------------------------------------------------


def test_start_reports_address_and_is_fast() -> None:
    server = EmbeddedElasticsearch(version="8.11.1")
    started = time.perf_counter()
    assert server.start() is server
    try:
        assert time.perf_counter() - started < 0.5
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.version == "8.11.1"
        assert server.stats() == {"current_open": 0, "total_opened": 0}
        status, _, body = request(server, "GET", "/")
        assert status == 200
        assert body["version"]["number"] == "8.11.1"
    finally:
        server.stop()


def test_stop_refuses_new_connections() -> None:
    server = EmbeddedElasticsearch().start()
    port = server.port
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    server.stop()  # idempotent


def test_every_server_thread_marks_itself_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    marked: list[str] = []
    monkeypatch.setattr(
        embedded, "mark_internal_thread", lambda: marked.append(threading.current_thread().name)
    )
    with EmbeddedElasticsearch() as server:
        request(server, "GET", "/")
        request(server, "GET", "/")
    assert len(marked) == 3  # the accept loop and two connections
    assert all(name.startswith("es-standin-") for name in marked)


def test_info_identifies_elasticsearch_for_every_client_major(
    standin: EmbeddedElasticsearch,
) -> None:
    # 7.x clients (no compatibility header) check the product header, tagline and flavor.
    status, headers, body = request(standin, "GET", "/", headers={"Accept": "application/json"})
    assert status == 200
    assert headers["x-elastic-product"] == "Elasticsearch"
    assert headers["content-type"] == "application/json"
    assert body["tagline"] == "You Know, for Search"
    assert body["version"]["build_flavor"] == "default"
    assert body["version"]["number"] == "8.15.0"
    for major, number in ((7, "8.15.0"), (8, "8.15.0"), (9, "9.1.0")):
        media = f"application/vnd.elasticsearch+json; compatible-with={major}"
        _, headers, body = request(standin, "GET", "/", headers={"Accept": media})
        assert (
            headers["content-type"] == f"application/vnd.elasticsearch+json;compatible-with={major}"
        )
        assert body["version"]["number"] == number


def test_head_root_has_no_body(standin: EmbeddedElasticsearch) -> None:
    status, headers, body = request(standin, "HEAD", "/")
    assert status == 200
    assert body is None
    assert headers["x-elastic-product"] == "Elasticsearch"


def test_client_info_and_ping(client: Any) -> None:
    assert client.ping() is True
    info = client.info()
    # What the stand-in reports per client major: 7.x clients send no compatibility
    # header and accept an 8.x server, so they get the default 8.15.0.
    expected = {7: "8.15.0", 8: "8.15.0", 9: "9.1.0"}[ES_MAJOR]
    assert info["version"]["number"] == expected
    assert info["cluster_name"] == "pytest-lambda-context"


# --- indices and documents --------------------------------------------------------------


def test_index_lifecycle(client: Any) -> None:
    assert not client.indices.exists(index="docs")
    created = client.indices.create(
        index="docs", mappings={"properties": {"tag": {"type": "keyword"}}}
    )
    assert body_of(created) == {"acknowledged": True, "shards_acknowledged": True, "index": "docs"}
    assert client.indices.exists(index="docs")
    assert client.indices.get(index="docs")["docs"]["mappings"] == {
        "properties": {"tag": {"type": "keyword"}}
    }
    with pytest.raises(BAD_REQUEST) as exc:
        client.indices.create(index="docs")
    assert exc.value.error == "resource_already_exists_exception"
    assert body_of(client.indices.delete(index="docs")) == {"acknowledged": True}
    assert not client.indices.exists(index="docs")
    with pytest.raises(elasticsearch.NotFoundError):
        client.indices.delete(index="docs")


def test_invalid_index_name_is_rejected(client: Any) -> None:
    with pytest.raises(BAD_REQUEST) as exc:
        client.indices.create(index="Docs")
    assert exc.value.error == "invalid_index_name_exception"


def test_document_round_trip(client: Any) -> None:
    first, status = with_status(
        client, lambda: client.index(index="docs", id="1", document={"title": "Hello"})
    )
    assert first["result"] == "created"
    assert (first["_version"], first["_seq_no"], first["_primary_term"]) == (1, 0, 1)
    assert status == 201
    assert client.indices.exists(index="docs")  # auto-created on write, as ES does
    second = client.index(index="docs", id="1", document={"title": "Hello again"})
    assert (second["result"], second["_version"], second["_seq_no"]) == ("updated", 2, 1)
    got = client.get(index="docs", id="1")
    assert body_of(got) == {
        "_index": "docs",
        "_id": "1",
        "_version": 2,
        "_seq_no": 1,
        "_primary_term": 1,
        "found": True,
        "_source": {"title": "Hello again"},
    }
    assert client.exists(index="docs", id="1")
    deleted = client.delete(index="docs", id="1")
    assert (deleted["result"], deleted["_version"]) == ("deleted", 3)
    assert not client.exists(index="docs", id="1")


def test_auto_id_and_create_conflict(client: Any) -> None:
    auto = client.index(index="docs", document={"a": 1})
    assert len(auto["_id"]) == 20
    assert client.get(index="docs", id=auto["_id"])["_source"] == {"a": 1}
    assert client.create(index="docs", id="x", document={"a": 2})["result"] == "created"
    with pytest.raises(elasticsearch.ConflictError) as exc:
        client.create(index="docs", id="x", document={"a": 3})
    assert exc.value.error == "version_conflict_engine_exception"
    assert client.get(index="docs", id="x")["_source"] == {"a": 2}


def test_update_merges_partial_doc(client: Any) -> None:
    client.index(index="docs", id="1", document={"a": {"b": 1, "c": 2}, "d": 1})
    updated = client.update(index="docs", id="1", doc={"a": {"b": 5}})
    assert (updated["result"], updated["_version"]) == ("updated", 2)
    assert client.get(index="docs", id="1")["_source"] == {"a": {"b": 5, "c": 2}, "d": 1}
    assert client.update(index="docs", id="1", doc={"d": 1})["result"] == "noop"
    with pytest.raises(elasticsearch.NotFoundError) as exc:
        client.update(index="docs", id="nope", doc={"d": 1})
    assert exc.value.error == "document_missing_exception"


def test_missing_document_and_index_are_404_like_es(standin: EmbeddedElasticsearch) -> None:
    request(standin, "PUT", "/docs")
    status, headers, body = request(standin, "GET", "/docs/_doc/nope")
    assert (status, body) == (404, {"_index": "docs", "_id": "nope", "found": False})
    assert headers["x-elastic-product"] == "Elasticsearch"
    status, _, body = request(standin, "DELETE", "/docs/_doc/nope")
    assert (status, body["result"]) == (404, "not_found")
    for method, path in (("GET", "/other/_doc/1"), ("POST", "/other/_search"), ("GET", "/other")):
        status, _, body = request(standin, method, path)
        assert status == 404
        assert body["status"] == 404
        assert body["error"]["type"] == "index_not_found_exception"
        assert body["error"]["root_cause"][0]["reason"] == "no such index [other]"
    assert request(standin, "HEAD", "/other")[0] == 404


# --- search -----------------------------------------------------------------------------

DOCS = {
    "1": {"title": "Quick brown fox", "tag": "animal", "n": 1, "tags": ["a", "b"]},
    "2": {"title": "Lazy brown dog", "tag": "animal", "n": 2, "tags": ["b"]},
    "3": {"title": "Quick Start Guide", "tag": "Docs", "n": 3, "tags": []},
}


@pytest.fixture
def populated(client: Any) -> Any:
    client.indices.create(index="docs", mappings={"properties": {"tag": {"type": "keyword"}}})
    for doc_id, source in DOCS.items():
        client.index(index="docs", id=doc_id, document=source)
    return client


def hit_ids(result: Any) -> set[str]:
    return {hit["_id"] for hit in result["hits"]["hits"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"match_all": {}}, {"1", "2", "3"}),
        ({"term": {"tag": "animal"}}, {"1", "2"}),
        ({"term": {"tag": "docs"}}, set()),  # keyword: exact, case-sensitive
        ({"term": {"title": "quick"}}, {"1", "3"}),  # text: matches an analysed token
        ({"term": {"title": "Quick"}}, set()),  # term queries are not analysed
        ({"term": {"title.keyword": "Lazy brown dog"}}, {"2"}),
        ({"term": {"n": {"value": 2}}}, {"2"}),
        ({"term": {"tags": "a"}}, {"1"}),
        ({"terms": {"n": [1, 3]}}, {"1", "3"}),
        ({"match": {"title": "QUICK dog"}}, {"1", "2", "3"}),
        ({"match": {"title": {"query": "quick fox", "operator": "and"}}}, {"1"}),
        ({"match": {"tag": "Docs"}}, {"3"}),
        ({"ids": {"values": ["2", "3", "9"]}}, {"2", "3"}),
        ({"bool": {"must": [{"match": {"title": "brown"}}]}}, {"1", "2"}),
        ({"bool": {"filter": {"term": {"tag": "animal"}}, "must_not": {"term": {"n": 1}}}}, {"2"}),
        ({"bool": {"should": [{"term": {"n": 1}}, {"term": {"n": 3}}]}}, {"1", "3"}),
        (
            {"bool": {"must": {"match": {"title": "quick"}}, "should": [{"term": {"n": 99}}]}},
            {"1", "3"},
        ),
        (
            {
                "bool": {
                    "should": [{"term": {"n": 1}}, {"term": {"tag": "animal"}}],
                    "minimum_should_match": 2,
                }
            },
            {"1"},
        ),
    ],
)
def test_query_types(populated: Any, query: dict[str, Any], expected: set[str]) -> None:
    result = populated.search(index="docs", query=query)
    assert hit_ids(result) == expected
    assert result["hits"]["total"] == {"value": len(expected), "relation": "eq"}
    assert result["timed_out"] is False
    for hit in result["hits"]["hits"]:
        assert hit["_index"] == "docs"
        assert hit["_source"] == DOCS[hit["_id"]]


def test_scores_order_hits(populated: Any) -> None:
    result = populated.search(index="docs", query={"match": {"title": "quick brown fox"}})
    assert [hit["_id"] for hit in result["hits"]["hits"]] == ["1", "2", "3"]
    assert result["hits"]["max_score"] == result["hits"]["hits"][0]["_score"] == 3.0


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("title:quick", {"1", "3"}),
        ("guide", {"3"}),
        ("*", {"1", "2", "3"}),
        ("tag:animal", {"1", "2"}),
    ],
)
def test_query_string_parameter(populated: Any, q: str, expected: set[str]) -> None:
    assert hit_ids(populated.search(index="docs", q=q)) == expected


def test_size_from_and_total(populated: Any) -> None:
    page = populated.search(index="docs", query={"match_all": {}}, size=1, from_=1)
    assert [hit["_id"] for hit in page["hits"]["hits"]] == ["2"]
    assert page["hits"]["total"] == {"value": 3, "relation": "eq"}
    capped = populated.search(index="docs", track_total_hits=2)
    assert capped["hits"]["total"] == {"value": 2, "relation": "gte"}
    assert "total" not in populated.search(index="docs", track_total_hits=False)["hits"]


def test_search_across_indices(populated: Any) -> None:
    populated.index(index="other", id="9", document={"title": "quick"})
    assert hit_ids(populated.search(q="title:quick")) == {"1", "3", "9"}
    assert hit_ids(populated.search(index="doc*,other", q="title:quick")) == {"1", "3", "9"}
    assert populated.count()["count"] == 4


def test_count_and_refresh(populated: Any) -> None:
    assert populated.count(index="docs")["count"] == 3
    assert count(populated, {"term": {"tag": "animal"}}, index="docs")["count"] == 2
    assert populated.count(index="docs", q="title:guide")["count"] == 1
    assert populated.indices.refresh(index="docs")["_shards"]["failed"] == 0


def test_bulk(client: Any) -> None:
    result = bulk(
        client,
        index="docs",
        operations=[
            {"index": {"_id": "1"}},
            {"title": "one"},
            {"create": {"_id": "2"}},
            {"title": "two"},
            {"create": {"_id": "2"}},
            {"title": "two again"},
            {"index": {"_index": "other"}},
            {"title": "auto id"},
            {"update": {"_id": "1"}},
            {"doc": {"extra": True}},
            {"delete": {"_id": "2"}},
        ],
    )
    assert result["errors"] is True
    items = result["items"]
    assert [next(iter(item)) for item in items] == [
        "index",
        "create",
        "create",
        "index",
        "update",
        "delete",
    ]
    assert [next(iter(item.values()))["status"] for item in items] == [201, 201, 409, 201, 200, 200]
    assert items[2]["create"]["error"]["type"] == "version_conflict_engine_exception"
    assert items[3]["index"]["_index"] == "other"
    assert client.get(index="docs", id="1")["_source"] == {"title": "one", "extra": True}
    assert not client.exists(index="docs", id="2")
    assert client.count(index="other")["count"] == 1


def test_bulk_helper(client: Any) -> None:
    from elasticsearch import helpers

    assert helpers.bulk(client, ({"_index": "docs", "_id": str(i), "n": i} for i in range(50))) == (
        50,
        [],
    )
    assert client.count(index="docs")["count"] == 50


def test_cluster_health(client: Any) -> None:
    health = client.cluster.health(wait_for_status="yellow", timeout="5s")
    assert health["status"] == "green"
    assert health["number_of_nodes"] == 1


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "what"),
    [
        ("GET", "/_cat/indices", None, "[GET /_cat/indices]"),
        ("GET", "/docs/_mapping", None, "[GET /docs/_mapping]"),
        ("PATCH", "/docs", None, "[PATCH /docs]"),
        ("POST", "/docs/_search", {"query": {"range": {"n": {"gte": 1}}}}, "query type [range]"),
        ("POST", "/docs/_search", {"aggs": {}}, "search option [aggs]"),
        ("GET", "/docs/_search?scroll=1m", None, "request parameter [scroll]"),
        ("GET", "/docs/_search?q=a%20AND%20b", None, "query-string syntax"),
    ],
)
def test_unsupported_is_400_naming_the_container_backend(
    standin: EmbeddedElasticsearch, method: str, path: str, body: Any, what: str
) -> None:
    request(standin, "PUT", "/docs")
    status, headers, error = request(standin, method, path, body)
    assert status == 400
    assert headers["x-elastic-product"] == "Elasticsearch"
    assert error["status"] == 400
    reason = error["error"]["reason"]
    assert reason == error["error"]["root_cause"][0]["reason"]
    assert reason.startswith(what)
    assert STANDIN in reason
    assert "--lambda-es=container" in reason
    assert request(standin, "GET", "/")[0] == 200  # still serving


def test_unsupported_through_the_client(populated: Any) -> None:
    with pytest.raises(BAD_REQUEST) as exc:
        populated.search(index="docs", query={"wildcard": {"title": "qu*"}})
    assert STANDIN in str(exc.value)
    assert "--lambda-es=container" in str(exc.value)


@pytest.mark.parametrize("path", ["/docs/_doc/1", "/docs/_search", "/_bulk"])
def test_malformed_json_is_parse_exception(standin: EmbeddedElasticsearch, path: str) -> None:
    method = "PUT" if "_doc" in path else "POST"
    status, _, body = request(
        standin, method, path, b'{"title": \n', {"Content-Type": "application/json"}
    )
    assert status == 400
    assert body["error"]["type"] == "parse_exception"
    assert request(standin, "GET", "/")[0] == 200


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n",
    ],
)
def test_malformed_request_line_is_400_and_close(
    standin: EmbeddedElasticsearch, data: bytes
) -> None:
    reply = raw_exchange(standin, data)  # returns only once the server has closed
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"X-elastic-product: Elasticsearch" in reply
    assert b"connection: close" in reply
    assert request(standin, "GET", "/")[0] == 200


@pytest.mark.parametrize(
    "partial",
    [
        b"GET / HT",
        b"PUT /docs/_doc/1 HTTP/1.1\r\nHost: x\r\nContent-Le",
        b'PUT /docs/_doc/1 HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"title": "half',
        b"POST /_bulk HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{",
    ],
)
def test_client_disconnecting_mid_request(standin: EmbeddedElasticsearch, partial: bytes) -> None:
    with socket.create_connection((standin.host, standin.port)) as sock:
        sock.sendall(partial)
        assert wait_for(lambda: standin.stats()["current_open"] == 1)
    assert wait_for(lambda: standin.stats()["current_open"] == 0)
    assert request(standin, "GET", "/")[0] == 200
    status, _, body = request(standin, "GET", "/docs/_doc/1")
    assert status == 404  # the half-sent document was never indexed (nor its index created)
    assert body["error"]["type"] == "index_not_found_exception"


def test_chunked_body_and_expect_continue(standin: EmbeddedElasticsearch) -> None:
    doc = b'{"title": "chunked"}'
    reply = raw_exchange(
        standin,
        b"PUT /docs/_doc/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\n"
        + b"%x\r\n%s\r\n" % (5, doc[:5])
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(doc) - 5, doc[5:]),
    )
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n")
    assert request(standin, "GET", "/docs/_doc/1")[2]["_source"] == {"title": "chunked"}


def test_compressed_client(standin: EmbeddedElasticsearch) -> None:
    es_client = elasticsearch.Elasticsearch(standin.url, http_compress=True)
    try:
        es_client.index(index="docs", id="1", document={"title": "gzipped"})
        assert (
            es_client.search(index="docs", query={"match": {"title": "gzipped"}})["hits"]["total"][
                "value"
            ]
            == 1
        )
    finally:
        es_client.close()


def test_http_1_0_closes_unless_keep_alive(standin: EmbeddedElasticsearch) -> None:
    reply = raw_exchange(standin, b"GET / HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["tagline"] == "You Know, for Search"


# --- connections ------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(standin: EmbeddedElasticsearch) -> None:
    conn = http.client.HTTPConnection(standin.host, standin.port, timeout=5)
    try:
        for i in range(200):
            conn.request("PUT", f"/docs/_doc/{i}", body=json.dumps({"i": i}))
            assert conn.getresponse().read()
        conn.request("GET", "/_nodes/stats/http")
        stats = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    (node,) = stats["nodes"].values()
    assert node["http"] == {"current_open": 1, "total_opened": 1}
    assert standin.stats()["total_opened"] == 1


def test_client_reuses_its_connection(client: Any, standin: EmbeddedElasticsearch) -> None:
    for i in range(50):
        client.index(index="docs", id=str(i), document={"i": i})
        client.search(index="docs", q=f"i:{i}")
    (node,) = client.nodes.stats(metric="http")["nodes"].values()
    assert node["http"] == {"current_open": 1, "total_opened": 1}


def test_stats_count_separate_connections(standin: EmbeddedElasticsearch) -> None:
    for _ in range(5):
        request(standin, "GET", "/")
    assert wait_for(lambda: standin.stats()["current_open"] == 0)
    status, _, stats = request(standin, "GET", "/_nodes/stats/http")
    assert status == 200
    (node,) = stats["nodes"].values()
    assert node["http"] == {"current_open": 1, "total_opened": 6}


def test_concurrent_clients(standin: EmbeddedElasticsearch) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            conn = http.client.HTTPConnection(standin.host, standin.port, timeout=5)
            try:
                for i in range(20):
                    conn.request("PUT", f"/docs/_doc/{n}-{i}", body=b'{"x": 1}')
                    response = conn.getresponse()
                    response.read()
                    assert response.status == 201
            finally:
                conn.close()
        except BaseException as exc:  # collected: assertions in threads are lost otherwise
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert request(standin, "GET", "/docs/_count")[2]["count"] == 160


def test_stop_closes_open_client_connections() -> None:
    server = EmbeddedElasticsearch().start()
    socks = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(20)]
    try:
        socks[0].sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert socks[0].recv(65536).startswith(b"HTTP/1.1 200")
        assert wait_for(lambda: server.stats()["current_open"] == 20)
        server.stop()
        assert server.stats()["current_open"] == 0
        for sock in socks:
            with contextlib.suppress(ConnectionResetError):  # a reset is a close too
                assert sock.recv(1) == b""  # the server closed its side
        assert not any(
            t.name.startswith(f"es-standin-conn-{server.port}") for t in threading.enumerate()
        )
    finally:
        for sock in socks:
            sock.close()


def test_no_descriptor_leak_over_many_connections() -> None:
    before = open_fds()
    server = EmbeddedElasticsearch().start()
    try:
        for _ in range(1000):
            with socket.create_connection((server.host, server.port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert wait_for(lambda: server.stats()["current_open"] == 0)
        assert server.stats()["total_opened"] == 1000
        # Some left open on purpose: stop() must close those too.
        kept = [socket.create_connection((server.host, server.port)) for _ in range(10)]
        assert wait_for(lambda: server.stats()["current_open"] == 10)
    finally:
        server.stop()
    for sock in kept:
        sock.close()
    assert open_fds() == before


# --- running as a program ---------------------------------------------------------------


def test_runs_as_a_program_until_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_lambda_context.services.elasticsearch.embedded",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in ready
        port = int(ready.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        assert json.loads(conn.getresponse().read())["version"]["number"] == "8.15.0"
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
