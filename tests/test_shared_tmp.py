"""Module isolation: writes under the literal /tmp are warned about, once per function."""

from __future__ import annotations

import os
import shutil

from support import write_project

HANDLERS = {
    "app/__init__.py": "",
    "app/cache.py": """
        import json, os, tempfile

        CACHE = os.environ["CACHE_PATH"]

        def handler(event, context):
            if event.get("where") == "own":
                with open(os.path.join(tempfile.gettempdir(), "cache.json"), "w") as f:
                    json.dump({}, f)
                with open(os.path.join(os.environ["TMPDIR"], "other.json"), "w") as f:
                    json.dump({}, f)
                return "own"
            if event.get("where") == "read":
                return os.path.exists(CACHE)
            if event.get("where") == "load":  # a cache another environment left, read
                if os.path.exists(CACHE):
                    with open(CACHE) as f:
                        return json.load(f)
                return None
            with open(CACHE, "w") as f:  # the classic Lambda /tmp cache
                json.dump(event, f)
            os.makedirs(CACHE + ".d", exist_ok=True)
            return "shared"
    """,
}


TESTS = """
    import os, shutil, tempfile, uuid
    import pytest
    from pytest_lambda_context import SharedTmpWarning

    CACHE = f"/tmp/plc-shared-{uuid.uuid4().hex}.json"

    @pytest.fixture(autouse=True)
    def cleanup():
        yield
        shutil.rmtree(CACHE + ".d", ignore_errors=True)
        if os.path.exists(CACHE):
            os.remove(CACHE)

    def make(make_lambda_function, **config):
        return make_lambda_function("app.cache.handler", env={"CACHE_PATH": CACHE}, **config)

    def test_a_write_under_tmp_is_warned_once(make_lambda_function):
        function = make(make_lambda_function)
        with pytest.warns(SharedTmpWarning) as seen:
            function.invoke({})
            function.invoke({})
            function.cold_start().invoke({})
        assert len(seen) == 1, [str(w.message) for w in seen]
        message = str(seen[0].message)
        assert CACHE in message and CACHE + ".d" in message
        assert "isolation='process'" in message and "TMPDIR" in message
        assert seen[0].filename == __file__  # the test's line that invoked

    def test_own_temp_folder_and_reads_are_not_warned(make_lambda_function):
        function = make(make_lambda_function)
        assert function.invoke({"where": "own"}) == "own"
        assert function.invoke({"where": "read"}) is False

    def test_reading_a_file_the_environment_did_not_write_is_warned(make_lambda_function):
        with open(CACHE, "w") as f:  # left by an earlier session
            f.write('{"stale": true}')
        function = make(make_lambda_function)
        with pytest.warns(SharedTmpWarning) as seen:
            assert function.invoke({"where": "load"}) == {"stale": True}
        assert len(seen) == 1
        message = str(seen[0].message)
        assert "read files under the literal /tmp that its environment did not write" in message
        assert CACHE in message and "isolation='process'" in message

    def test_reading_back_its_own_write_is_only_the_write(make_lambda_function):
        function = make(make_lambda_function)
        with pytest.warns(SharedTmpWarning) as seen:
            function.invoke({"n": 1})
            assert function.invoke({"where": "load"}) == {"n": 1}
        assert ["wrote under" in str(w.message) for w in seen] == [True]

    def test_a_cache_miss_is_not_warned(make_lambda_function):
        function = make(make_lambda_function)
        assert function.invoke({"where": "load"}) is None

    def test_process_isolation_has_its_own_tmp(make_lambda_function):
        function = make(make_lambda_function, isolation="process")
        assert function.invoke({}) == "shared"

    def test_error_filter_fails_the_invoke_not_function_code(make_lambda_function):
        function = make(make_lambda_function)
        with pytest.warns(SharedTmpWarning):
            pass_through = function.invoke({})
        assert pass_through == "shared"
        # The invocation was recorded whole before the warning was issued.
        assert [i.error for i in function.invocations] == [None]
"""


def test_writes_under_the_literal_tmp_are_warned(pytester):
    write_project(pytester, HANDLERS, test_session=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)


def test_with_warnings_as_errors_the_invoke_fails(pytester):
    write_project(
        pytester,
        HANDLERS,
        test_session="""
        import os, uuid
        import pytest
        from pytest_lambda_context import SharedTmpWarning

        CACHE = f"/tmp/plc-shared-{uuid.uuid4().hex}.json"

        def test_invoke(make_lambda_function):
            function = make_lambda_function("app.cache.handler", env={"CACHE_PATH": CACHE})
            try:
                with pytest.raises(SharedTmpWarning, match="wrote under the literal /tmp"):
                    function.invoke({"n": 1})
                # Function code itself ran to the end; the invocation is recorded.
                assert function.invocations[0].result == "shared"
                assert os.path.exists(CACHE)
            finally:
                os.remove(CACHE)
                os.rmdir(CACHE + ".d")
        """,
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error::pytest_lambda_context.SharedTmpWarning"
    )
    result.assert_outcomes(passed=1)


def test_the_watch_ignores_allowed_folders_and_bytecode_caches():
    from pathlib import Path

    from pytest_lambda_context.environments.shared_tmp import TmpWatch

    watch = TmpWatch(("/tmp/own/", "/tmp/code"))
    for path in (
        "/tmp/own/x",
        "/tmp/code/app/state.json",
        "/tmp/lib/__pycache__/m.pyc",
        "/tmp/lib/__pycache__",  # os.mkdir of the cache folder itself
        "/tmp/pytest-of-root/pytest-3/test_x0/marker",  # a tmp_path handed in
    ):
        watch.note(path)
    for other in ("relative/x", "/var/tmp/x", "/tmpfile", 3):
        watch.note(other)
    assert watch.paths == []
    watch.note(b"/tmp/cache.json")
    watch.note(Path("/tmp/own2/x"))  # a sibling of an allowed folder is not inside it
    watch.note("/tmp/cache.json")
    assert watch.paths == ["/tmp/cache.json", "/tmp/own2/x"]


def test_reading_python_source_under_tmp_is_not_reading_shared_data() -> None:
    # A traceback reads the source of each frame: with an editable install of a package
    # under /tmp, that is no file an earlier environment left there.
    import tempfile

    from pytest_lambda_context.environments.shared_tmp import TmpWatch

    folder = tempfile.mkdtemp(prefix="plc-src-", dir="/tmp")
    try:
        source = os.path.join(folder, "module.py")
        data = os.path.join(folder, "state.json")
        for path in (source, data):
            with open(path, "w") as file:
                file.write("x")
        watch = TmpWatch(())
        watch.note_read(source)
        watch.note_read(data)
        assert watch.reads == [data]
    finally:
        shutil.rmtree(folder)
