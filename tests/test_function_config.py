"""FunctionConfig: one frozen, checked config per function; fixtures wire into it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_lambda_context import FunctionConfig, LambdaFunction
from pytest_lambda_context.environments.function_config import (
    MARKER_OPTIONS,
    OPTION_NAMES,
    FunctionWiring,
)
from pytest_lambda_context.environments.registry import ISOLATIONS, isolation_of


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "main.py").write_text("def handler(event, context):\n    return event\n")
    return tmp_path


def test_the_function_keeps_its_checked_config(root: Path) -> None:
    with LambdaFunction("app.main.handler", code_root=root, env={"A": "1"}) as function:
        config = function.config
        assert isinstance(config, FunctionConfig)
        assert (config.function_name, config.code_root) == ("app-main", str(root))
        assert function.function_name == "app-main" and function.timeout == 3.0
        assert "aws_lambda_powertools" in config.fresh_packages
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.timeout = 5.0  # type: ignore[misc]
        with pytest.raises(TypeError):
            config.env["A"] = "2"  # type: ignore[index]
        assert function.invoke({"x": 1}) == {"x": 1}


def test_a_given_env_is_copied(root: Path) -> None:
    env = {"A": "1"}
    config = FunctionConfig.build("app.main.handler", {"code_root": root, "env": env})
    env["A"] = "changed"
    assert dict(config.env) == {"A": "1"}


def test_an_unknown_option_names_the_valid_ones(root: Path) -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) colour; valid: env, timeout"):
        LambdaFunction("app.main.handler", code_root=root, colour="red")


@pytest.mark.parametrize("value", [None, "thread", 3])
def test_isolation_must_be_one_of_the_kinds(root: Path, value: object) -> None:
    with pytest.raises(
        ValueError, match=r"isolation=.* is not valid; choose one of: module, process"
    ):
        LambdaFunction("app.main.handler", code_root=root, isolation=value)


def test_none_says_how_to_use_the_option() -> None:
    with pytest.raises(ValueError, match="leave it out to use the lambda_isolation option"):
        isolation_of(None)  # type: ignore[arg-type]


def test_every_check_holds_on_a_config_made_by_replace(root: Path) -> None:
    config = FunctionConfig.build("app.main.handler", {"code_root": root})
    with pytest.raises(ValueError, match="timeout=0 is out of range"):
        dataclasses.replace(config, timeout=0)
    with pytest.raises(ValueError, match="snap_start=True needs isolation='process'"):
        dataclasses.replace(config, snap_start=True)


def test_reuse_key_is_the_options_not_the_wiring(root: Path) -> None:
    one = FunctionConfig.build("app.main.handler", {"code_root": root})
    other = FunctionConfig.build("app.main.handler", {"code_root": root, "tmp_root": root})
    assert one.clock is not other.clock
    assert one.reuse_key() == other.reuse_key()
    longer = FunctionConfig.build("app.main.handler", {"code_root": root, "timeout": 4})
    assert longer.reuse_key() != one.reuse_key()


def test_wiring_merges_the_same_in_any_order(root: Path) -> None:
    config = FunctionConfig.build(
        "app.main.handler", {"code_root": root, "env": {"URL": "{es_url}", "B": "mine"}}
    )
    aws = FunctionWiring(env={"B": "fixture", "C": "fixture"}, credentials={"K": "v"})
    es = FunctionWiring(placeholders={"es_url": lambda: "http://es"})
    proxies: dict[str, object] = {}
    late = FunctionWiring(placeholders=proxies)  # type: ignore[arg-type]
    one = config.wired([aws, es, late])
    other = config.wired([late, es, aws])
    for wired in (one, other):
        # The test's own values win over a fixture's.
        assert dict(wired.env) == {"URL": "{es_url}", "B": "mine", "C": "fixture"}
        assert dict(wired.credentials) == {"K": "v"}
        assert wired.placeholders["es_url"]() == "http://es"
        # A mapping filled after the wiring (a tcp_proxy made later) is seen.
        proxies["proxy:db"] = lambda: "127.0.0.1:1"
        assert wired.placeholders["proxy:db"]() == "127.0.0.1:1"
        del proxies["proxy:db"]


def test_an_unknown_placeholder_is_refused_before_any_wiring(root: Path) -> None:
    with pytest.raises(ValueError, match=r"uses \{es_ulr\}, an unknown placeholder"):
        FunctionConfig.build("app.main.handler", {"code_root": root, "env": {"U": "{es_ulr}"}})


def test_an_es_placeholder_needs_its_fixture_when_the_function_is_made(root: Path) -> None:
    with pytest.raises(ValueError, match="would come from a service fixture named 'es'"):
        LambdaFunction("app.main.handler", code_root=root, env={"U": "{es_url}"})


def test_the_marker_takes_the_options_less_what_the_session_decides() -> None:
    assert set(MARKER_OPTIONS) < set(OPTION_NAMES)
    assert "network" not in MARKER_OPTIONS and "clock" not in MARKER_OPTIONS
    assert MARKER_OPTIONS[:4] == ("env", "timeout", "memory_mb", "isolation")


def test_isolation_kinds_declare_what_they_can_do() -> None:
    module, process = ISOLATIONS["module"], ISOLATIONS["process"]
    assert module.in_test_process and not process.in_test_process
    assert process.needs_template and process.runs_in_parallel and process.can_freeze
    assert process.can_snapshot and not module.can_snapshot


_BAD_MARKERS = {
    "isolation=None": (
        "isolation=None",
        "isolation=None is not valid; choose one of: module, process (leave it out to use "
        "the lambda_isolation option)",
    ),
    "nul": ('handler="app.m\\0ain.handler"', "holds a NUL character"),
    "white space": ('handler="app main.handler"', "without white space, such as"),
    "placeholder": ('env={"U": "{es_ulr}"}', "uses {es_ulr}, an unknown placeholder"),
    "code_root": ('code_root="nowhere"', "code_root '*nowhere' is not a folder"),
    "fresh": ('fresh_packages=["not_installed_pkg"]', "no package named 'not_installed_pkg'"),
    "snap_start": ("snap_start=True", "snap_start=True needs isolation='process'"),
    "nan": ('timeout=float("nan")', "timeout=nan is not a number"),
    "inherit_env": ('inherit_env="HOME"', "give a list of variable names"),
}


@pytest.mark.parametrize("case", list(_BAD_MARKERS))
def test_a_bad_marker_value_fails_collection_naming_test_marker_and_form(
    pytester: pytest.Pytester, case: str
) -> None:
    arguments, message = _BAD_MARKERS[case]
    if not arguments.startswith("handler="):
        arguments = f'handler="app.main.handler", {arguments}'
    handler, _, options = arguments.partition(", ")
    pytester.makepyfile(
        **{
            "app/__init__.py": "",
            "app/main.py": "def handler(event, context):\n    return event\n",
            "test_it.py": f"""
                import pytest

                @pytest.mark.lambda_handler({handler.partition("=")[2]}{", " + options if options else ""})
                def test_it(lambda_function):
                    lambda_function.invoke({{}})

                def test_other():
                    pass
            """,
        }
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: test_it.py::test_it: @pytest.mark.lambda_handler: *{message}*"
            "The form is @pytest.mark.lambda_handler(handler, **config)"
        ]
    )
    output = result.stdout.str() + result.stderr.str()
    assert "pytest_lambda_context" not in output and "Traceback" not in output


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_handler_that_fails_to_load_shows_the_error_not_the_plugin(
    pytester: pytest.Pytester, isolation: str
) -> None:
    pytester.makepyfile(
        **{
            "app/__init__.py": "",
            "app/main.py": "def handler(event, context):\n    return event\n",
            "app/broken.py": "import missing_dep_xyz\n",
            "test_it.py": f"""
                import pytest

                @pytest.mark.parametrize(
                    "handler", ["nodot", "app.nothere.handler", "app.main.nothere"]
                )
                def test_plain(make_lambda_function, handler):
                    make_lambda_function(handler, isolation="{isolation}").invoke({{}})

                def test_user_import(make_lambda_function):
                    make_lambda_function("app.broken.handler", isolation="{isolation}").invoke({{}})
            """,
        }
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=4)
    output = result.stdout.str()
    assert "_RetryInit" not in output
    for error in (
        "Runtime.MalformedHandlerName: Bad handler 'nodot'",
        "Runtime.ImportModuleError: Unable to import module 'app.nothere'",
        "Runtime.HandlerNotFound: Handler 'nothere' missing on module 'app.main'",
    ):
        assert f"E       pytest_lambda_context.runtime.errors.InitError: {error}" in output
    plain = output.split("test_user_import")[0]
    assert "pytest_lambda_context/" not in plain.replace("pytest_lambda_context.runtime", "")
    # Where function code raised it, its own line is shown.
    result.stdout.fnmatch_lines(["*No module named 'missing_dep_xyz'*"])
