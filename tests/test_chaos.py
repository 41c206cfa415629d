"""Chaos routing: a handler that passes only because its environment stayed warm fails,
the seed is in the header and the failure, and the same seed replays the same failure."""

from __future__ import annotations

import re
import textwrap

import pytest

HANDLER = """
    count = 0  # assumes one environment serves every request


    def handler(event, context):
        global count
        count += 1
        return count
"""

TESTS = """
    import pytest


    @pytest.mark.lambda_handler("app.counter.handler")
    def test_counts_every_request(lambda_function):
        assert [lambda_function.invoke({}) for _ in range(12)] == list(range(1, 13))


    @pytest.mark.lambda_handler("app.counter.handler")
    def test_explicit_routing_is_unchanged(lambda_function):
        environment = lambda_function.cold_start()
        assert [environment.invoke({}) for _ in range(12)] == list(range(1, 13))
"""


def _project(pytester: pytest.Pytester, tests: str = TESTS) -> None:
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "__init__.py").write_text("")
    (pytester.path / "app" / "counter.py").write_text(textwrap.dedent(HANDLER))
    pytester.makepyfile(test_it=textwrap.dedent(tests))


def _failure(output: str) -> str:
    """The assertion the failing test reports (request ids and timings left out)."""
    return "\n".join(line for line in output.splitlines() if line.startswith("E  "))


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_handler_that_assumes_reuse_fails_and_the_seed_replays_it(
    pytester: pytest.Pytester, isolation: str
) -> None:
    _project(pytester)
    args = ("-p", "no:cacheprovider", f"--lambda-isolation={isolation}")
    assert pytester.runpytest_subprocess(*args).ret == pytest.ExitCode.OK
    first = pytester.runpytest_subprocess(*args, "--lambda-chaos=7")
    first.assert_outcomes(passed=1, failed=1)
    first.stdout.fnmatch_lines(
        [
            "lambda-context: chaos routing, seed 7 (replay with --lambda-chaos=7)",
            "*lambda-context chaos routing*",
            "chaos routing seed 7: replay this routing with --lambda-chaos=7 or "
            "@pytest.mark.lambda_chaos(seed=7)",
        ]
    )
    again = pytester.runpytest_subprocess(*args, "--lambda-chaos=7")
    again.assert_outcomes(passed=1, failed=1)
    assert _failure(again.stdout.str()) == _failure(first.stdout.str())


def test_the_marker_routes_one_test_and_seed_none_takes_the_sessions(
    pytester: pytest.Pytester,
) -> None:
    _project(
        pytester,
        TESTS.replace(
            "def test_counts_every_request",
            "@pytest.mark.lambda_chaos\n    def test_counts_every_request",
        ),
    )
    # The session draws its seed: one in 2,048 routes all twelve requests to one
    # environment (each warm request: no recycle, 3/4, and no new one, 2/3), and the
    # test passes by luck; a second session draws again.
    for _ in range(3):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        if result.parseoutcomes().get("failed"):
            break
    result.assert_outcomes(passed=1, failed=1)
    seed = re.search(r"chaos routing seed (\d+): replay", result.stdout.str())
    assert seed is not None
    replayed = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--lambda-chaos={seed.group(1)}"
    )
    assert _failure(replayed.stdout.str()) == _failure(result.stdout.str())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("--lambda-chaos=x", "--lambda-chaos / ini lambda_chaos: 'x' is not a seed"),
    ],
)
def test_a_bad_seed_is_a_usage_error(
    pytester: pytest.Pytester, arguments: str, message: str
) -> None:
    _project(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", arguments)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_a_bad_marker_seed_fails_collection(pytester: pytest.Pytester) -> None:
    _project(
        pytester,
        TESTS.replace(
            "def test_counts_every_request",
            '@pytest.mark.lambda_chaos(seed="a")\n    def test_counts_every_request',
        ),
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*@pytest.mark.lambda_chaos: seed must be a whole number >= 0 or None, not 'a'*"]
    )
