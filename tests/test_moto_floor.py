"""moto 4.2, the aws extra's floor: installing the plugin never upgrades a project's
moto 4, whose own mocks keep working beside the plugin; the aws fixture, which drives
moto 5's mock_aws, says what it needs. CI runs this module with moto 4.2 (tox's
py311-moto4) and, in the quick start's run, with moto 5."""

from __future__ import annotations

import importlib.metadata

import pytest

moto = pytest.importorskip("moto")
pytest.importorskip("boto3")

MOTO_MAJOR = int(moto.__version__.split(".")[0])

# A project's own mock, as its moto major spells it (mock_s3 is gone in moto 5).
OWN_MOCK = "mock_s3" if MOTO_MAJOR < 5 else "mock_aws"

HANDLER = """
import boto3

s3 = boto3.client("s3", region_name="us-east-1")

def handler(event, context):
    return sorted(bucket["Name"] for bucket in s3.list_buckets()["Buckets"])
"""


def test_the_aws_extra_keeps_a_projects_moto_4() -> None:
    requires = importlib.metadata.requires("pytest-lambda-context") or []
    moto_lines = [line for line in requires if line.startswith("moto")]
    assert moto_lines == ['moto[server]>=4.2; extra == "aws"']


def test_a_projects_own_moto_mocks_work_beside_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{"app/__init__": "", "app/buckets": HANDLER})
    pytester.makepyfile(
        test_own=f"""
        import boto3
        import pytest
        from moto import {OWN_MOCK}

        @pytest.fixture(autouse=True)
        def credentials(monkeypatch):
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

        @{OWN_MOCK}
        def test_plain():
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="plain")

        @{OWN_MOCK}
        @pytest.mark.lambda_handler("app.buckets.handler")
        def test_handler_under_the_projects_mock(lambda_function):
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="mine")
            assert lambda_function.invoke({{}}) == ["mine"]
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=2)


def test_the_aws_fixture_says_which_moto_it_needs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{"app/__init__": "", "app/buckets": HANDLER})
    pytester.makepyfile(
        test_fixture="""
        import boto3
        import pytest

        @pytest.mark.lambda_handler("app.buckets.handler")
        def test_fixture(aws, lambda_function):
            boto3.client("s3").create_bucket(Bucket="made")
            assert lambda_function.invoke({}) == ["made"]
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:xdist")
    if MOTO_MAJOR >= 5:
        result.assert_outcomes(passed=1)
        return
    result.assert_outcomes(errors=1)  # at the fixture's setup
    result.stdout.fnmatch_lines(
        [
            f"*the aws fixture needs moto 5 or later; this environment has moto "
            f"{moto.__version__}, which has no mock_aws*pip install 'moto[[]server]>=5'"
        ]
    )
    assert "Traceback" not in result.stdout.str()
