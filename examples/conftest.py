"""Shared fixtures of the example tests."""

import pytest


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
