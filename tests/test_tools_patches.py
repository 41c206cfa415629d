"""A test-side patch of a process-isolated function's module is noticed and said."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLER = """
    _client = None

    def get_client():
        return "real client"

    def handler(event, context):
        global _client
        if _client is None:
            _client = object()  # module state rebound in the test process: not a patch
        return get_client()
"""
TESTS = """
    from unittest import mock

    import pytest

    from app import search

    pytestmark = pytest.mark.lambda_handler("app.search.handler", isolation="process")

    def test_monkeypatch(lambda_function, monkeypatch):
        monkeypatch.setattr(search, "get_client", lambda: "fake client")
        assert lambda_function.invoke({}) == "real client"
        lambda_function.invoke({})  # warned once per patch

    def test_mock_patch(lambda_function):
        with mock.patch("app.search.get_client", return_value="fake client"):
            assert lambda_function.invoke({}) == "real client"

    def test_lambda_env_then_patch(lambda_env, monkeypatch):
        monkeypatch.setattr(search, "get_client", lambda: "fake client")
        assert lambda_env.invoke({}) == "real client"

    def test_no_patch(lambda_function):
        search.handler({}, None)  # the test's own call rebinds _client: not a patch
        assert lambda_function.invoke({}) == "real client"

    @pytest.mark.lambda_handler("app.search.handler", isolation="module")
    def test_module_isolation_is_not_checked(lambda_function, monkeypatch):
        monkeypatch.setattr(search, "get_client", lambda: "fake client")
        assert lambda_function.invoke({}) == "real client"
"""


@pytest.fixture
def patched(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.mkpydir("app")
    pytester.makepyfile(**{"app/search": HANDLER, "test_patched": TESTS})
    return pytester


def test_each_patch_gets_a_warning_that_says_what_to_do(patched: pytest.Pytester) -> None:
    result = patched.runpytest_subprocess("-p", "no:cacheprovider", "-W", "default")

    result.assert_outcomes(passed=5, warnings=3)
    output = result.stdout.str()
    # Where the test invoked the function, and what to do instead.
    result.stdout.fnmatch_lines(
        [
            "test_patched.py::test_monkeypatch",
            "*test_patched.py:*: TestSidePatchWarning: app.search.get_client was replaced "
            "in the test process (monkeypatch, mock.patch), but env-1 of app-search runs in "
            "a worker process (isolation='process') with its own app.search*",
            '    assert lambda_function.invoke({}) == "real client"',
            "test_patched.py::test_mock_patch",
            "test_patched.py::test_lambda_env_then_patch",
        ]
    )
    assert "use isolation='module' and patch the environment's own module" in output
    assert "monkeypatch.setattr(environment.module, 'get_client', ...)" in output
    assert "env=" in output
    assert "test_no_patch" not in output.split("warnings summary")[1]


def test_under_filterwarnings_error_the_test_fails_with_it(patched: pytest.Pytester) -> None:
    result = patched.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error::pytest_lambda_context.TestSidePatchWarning"
    )

    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(["*TestSidePatchWarning: app.search.get_client was replaced*"])
