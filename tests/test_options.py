"""Option values are checked when the session starts, not at the first test that uses them."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

EXPECTED = "; expected http(s)://host:port"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("notaurl", "'notaurl' is not a URL"),
        ("localhost:9200", "'localhost:9200' is not a URL"),
        ("ftp://es.example:21", "'ftp://es.example:21' is not an http or https URL"),
        ("http://:9200", "'http://:9200' has no host"),
        ("http://es.example:92OO", "'http://es.example:92OO' has a port that is not a number*"),
        ("http://[::1:9200", "'http://[::1:9200' is not a URL"),
        # The password is not repeated in the error.
        ("ftp://elastic:s3cret@es.example", "'ftp://elastic:***@es.example' is not an http*"),
    ],
)
@pytest.mark.parametrize("where", ["command line", "ini"])
def test_a_bad_es_url_is_a_usage_error_at_startup(
    pytester: pytest.Pytester, url: str, problem: str, where: str
) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    if where == "ini":
        pytester.makeini(f"[pytest]\nlambda_es_url = {url}\n")
        result = pytester.runpytest("-p", "no:cacheprovider")
    else:
        result = pytester.runpytest("-p", "no:cacheprovider", f"--lambda-es-url={url}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--lambda-es-url / ini lambda_es_url: {problem}{EXPECTED}*"])
    assert "s3cret" not in result.stderr.str()


@pytest.mark.parametrize(
    "url",
    ["http://localhost:9200", "https://elastic:pw@es.example/prefix", "http://[::1]:9200", ""],
)
def test_good_or_empty_es_urls_are_accepted(pytester: pytest.Pytester, url: str) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    # lambda_es = embedded: the header does not try to reach the URL.
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--lambda-es=embedded", f"--lambda-es-url={url}"
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("flag", "value", "example"),
    [
        ("--lambda-report", ".", "--lambda-report=lambda-report.json"),
        ("--lambda-report", "reports/", "--lambda-report=lambda-report.json"),
        ("--lambda-html", "existing", "--lambda-html=lambda-report.html"),
    ],
)
def test_a_report_path_that_is_a_folder_is_a_usage_error(
    pytester: pytest.Pytester, flag: str, value: str, example: str
) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    pytester.mkdir("existing")
    before = sorted(p.name for p in pytester.path.rglob("*"))
    result = pytester.runpytest("-p", "no:cacheprovider", f"{flag}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    name = flag.removeprefix("--").replace("-", "_")
    result.stderr.fnmatch_lines(
        [f"*{flag} / ini {name}: {value!r} is a folder; give the file to write, e.g. {example}*"]
    )
    assert "Traceback" not in result.stderr.str()
    # No stray file (a ".tmp" beside the folder, say) and no folder made.
    assert sorted(p.name for p in pytester.path.rglob("*")) == before


def test_a_report_file_in_a_new_folder_is_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--lambda-report=out/report.json")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "out" / "report.json").is_file()
