"""The aws fixture's cost per test, and the moto server's start, as medians.

    python benchmarks/bench_aws.py [--tests 40]

Runs small pytest sessions (subprocesses) of ``--tests`` tests each and takes the
median of each test's setup + call + teardown, leaving out the first test (it pays
for importing moto once per session):

- baseline: an empty test;
- aws fixture: an empty test that requests ``aws`` (moto on, credentials swapped,
  all put back);
- module isolation, no aws: a cold start of a handler that builds a DynamoDB client at
  import, invoked so that it makes no call (there is nothing to call without moto);
- module isolation + aws: the same handler, calling DynamoDB (moto in-process) once;
- process isolation: the same handler in a worker process, against the moto server.

Targets (issue 4): the aws fixture adds at most 50 ms to a test in module isolation;
the moto server starts at most once per session in process isolation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _project import make_project

FILES = {
    "fn/__init__.py": "",
    "fn/table.py": """
        import boto3

        dynamodb = boto3.client("dynamodb")

        def handler(event, context):
            if not event.get("call", True):
                return 0
            return len(dynamodb.list_tables()["TableNames"])
    """,
    # Each test's setup + call + teardown, and the moto server URL it saw.
    "conftest.py": """
        import json, os

        DURATIONS = {}
        URLS = set()

        def pytest_runtest_logreport(report):
            DURATIONS[report.nodeid] = DURATIONS.get(report.nodeid, 0.0) + report.duration

        def pytest_sessionfinish(session):
            with open(os.environ["BENCH_OUT"], "w") as out:
                json.dump({"durations": list(DURATIONS.values()), "urls": sorted(URLS)}, out)
    """,
}

TESTS = {
    "baseline": "def test_{n}():\n    pass\n",
    "aws fixture": "def test_{n}(aws):\n    pass\n",
    "module isolation, no aws": (
        "def test_{n}(lambda_function):\n"
        "    assert lambda_function.invoke({{'call': False}}) == 0\n"
    ),
    "module isolation + aws": (
        "def test_{n}(lambda_function, aws):\n    assert lambda_function.invoke({{}}) == 0\n"
    ),
    "process isolation + aws": (
        "def test_{n}(lambda_function, aws):\n"
        "    assert lambda_function.invoke({{}}) == 0\n"
        "    import conftest; conftest.URLS.add(aws.endpoint_url)\n"
    ),
}


def run_session(root: Path, variant: str, count: int) -> dict[str, list[float] | list[str]]:
    isolation = "process" if variant.startswith("process") else "module"
    (root / "pytest.ini").write_text(
        "[pytest]\n"
        f"lambda_handler = fn.table.handler\nlambda_isolation = {isolation}\n"
        "filterwarnings = error\n"
    )
    tests = "".join(TESTS[variant].format(n=n) + "\n" for n in range(count))
    (root / "test_bench.py").write_text(tests)
    out = Path(tempfile.mkdtemp(prefix="plc-bench-out-")) / "out.json"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environ["BENCH_OUT"] = str(out)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"],
        cwd=root,
        env=environ,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    data: dict[str, list[float] | list[str]] = json.loads(out.read_text())
    return data


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=40)
    args = parser.parse_args()
    root = make_project(FILES)
    medians: dict[str, float] = {}
    for variant in TESTS:
        data = run_session(root, variant, args.tests)
        durations = [float(d) for d in data["durations"]]
        medians[variant] = median_ms(durations[1:])
        print(
            f"{variant:<26} first test {durations[0] * 1000:7.1f} ms, "
            f"then median {medians[variant]:6.2f} ms per test (of {len(durations) - 1})"
        )
        if data["urls"]:
            print(f"{'':<26} moto server URLs seen by {len(durations)} tests: {len(data['urls'])}")
    overhead = medians["aws fixture"] - medians["baseline"]
    print(f"aws fixture overhead per test (module isolation): {overhead:.2f} ms (target <= 50)")
    with_call = medians["module isolation + aws"] - medians["module isolation, no aws"]
    print(f"aws fixture + one moto call, on a cold start in module isolation: {with_call:.2f} ms")

    # The moto server's own start, in this process, once moto is imported.
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    import moto.moto_server.werkzeug_app  # noqa: F401  (import time is not start time)

    from pytest_lambda_context.services.aws import _MotoServer

    started = time.perf_counter()
    server = _MotoServer()
    print(f"moto server start (once per session): {(time.perf_counter() - started) * 1000:.1f} ms")
    server.stop()


if __name__ == "__main__":
    main()
