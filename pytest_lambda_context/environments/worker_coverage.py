"""Coverage.py in the processes of ``isolation="process"``.

When coverage.py measures the test session (pytest-cov, or ``coverage run -m pytest``),
the test process hands the session's coverage configuration to the template
(:func:`session_coverage`), and every process forked from it measures with that
configuration (:func:`start_in_worker`): each saves its own data file when it ends,
and a process forked from a measuring one (a SnapStart restore, one of a Managed
Instances environment's processes, a ``multiprocessing`` child of function code)
starts afresh with its own file (:func:`_restart_in_fork`). Coverage's own
``[run] patch = fork`` is not used for this: before coverage 7.17 it restarts a
child only from ``COVERAGE_PROCESS_START``/``_CONFIG``, which workers do not have.

Where the files go depends on the session:

- ``parallel`` data (pytest-cov always, or ``[run] parallel``/``patch = subprocess``):
  next to the session's data file, where the session's own combine step (pytest-cov's,
  or the user's ``coverage combine``) takes them in, as it takes any subprocess's.
- otherwise (``coverage run -m pytest``, one ``.coverage`` file): into a private
  folder, merged into the session's data by :func:`merge_into_session` when the
  template closes, so ``coverage report`` sees them without a combine step.

The template itself does not measure (it runs none of the function's code): the
coverage variables that would start coverage in any new interpreter
(``COVERAGE_PROCESS_START``/``_CONFIG``, old pytest-cov's ``COV_CORE_*``) are kept
out of its environment, so measurement is started only here, once per process.

A worker saves its data when it ends normally (``os._exit`` is wrapped to save first).
A worker killed with SIGKILL (a timeout, or still running when the template closed)
loses the data it had not saved.
"""

from __future__ import annotations

import atexit
import glob
import os
import secrets
import shutil
import socket
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "CoverageHandoff",
    "data_folder",
    "merge_into_session",
    "session_coverage",
    "start_in_worker",
    "template_environ",
    "warm_up",
]

# Variables that start coverage in every new interpreter (coverage's .pth file, and
# pytest-cov's before version 6): the template must not measure itself.
_STARTUP_VARIABLES = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")
_STARTUP_PREFIXES = ("COV_CORE_",)
# Warnings that are noise in a worker: it imports only some of the source packages,
# the template imported the plugin's own modules before coverage started, and a worker
# whose code is outside the measured source collects nothing.
_QUIET = ("no-data-collected", "module-not-imported", "module-not-measured")
# Patches of the session's configuration that a worker does not take: function code
# sees a clean environment (no COVERAGE_PROCESS_CONFIG), this module saves at
# os._exit itself (coverage's own _exit patch would save a forked child's copy of its
# parent's data under the parent's file name), and restarts measurement in forks.
_NOT_IN_WORKERS = frozenset({"subprocess", "_exit", "execv", "fork"})
_CONFIG_DATA_PREFIX = ":data:"  # coverage.control.CONFIG_DATA_PREFIX
# In a worker process: the handoff it measures with (its forks inherit it).
_measuring: CoverageHandoff | None = None
# Coverage grew CoverageConfig.serialize (the configuration as one string) in 7.10.
_MINIMUM = "7.10"


@dataclass(frozen=True)
class CoverageHandoff:
    """What a worker needs to measure as the session does (picklable, sent once)."""

    config: str
    """The session's configuration, as ``CoverageConfig.serialize()`` gives it."""
    root: str
    """The folder the configuration's relative paths (source, include, omit) are relative to."""
    data_file: str
    """The absolute base name of the workers' data files."""
    source: list[str] | None
    """The ``source`` setting with the folders made absolute."""
    private_folder: str | None
    """Set when the workers' files are merged by :func:`merge_into_session`."""


def session_coverage(root: str | None = None) -> CoverageHandoff | None:
    """The handoff for the coverage that measures this process, or None if none does.

    ``root``: where the session's relative paths point (pytest's invocation folder);
    default: the current folder. Imports nothing when coverage is not loaded.
    """
    coverage: Any = sys.modules.get("coverage")
    if coverage is None:
        return None
    session = coverage.Coverage.current()
    if session is None:
        return None
    config = session.config
    if not hasattr(config, "serialize"):
        warnings.warn(
            f"coverage {coverage.__version__} cannot hand its configuration to the worker "
            "processes of isolation='process': handler code they run is reported as not run. "
            f"Upgrade coverage to {_MINIMUM} or later (pip install 'coverage>={_MINIMUM}').",
            stacklevel=2,
        )
        return None
    # The workers run the measured code and save its data; this process may run none
    # of it, and coverage would then say "No data was collected" (an error under
    # -W error) about data that is there.
    quiet = _names(session.get_option("run:disable_warnings"))
    if "no-data-collected" not in quiet:
        session.set_option("run:disable_warnings", [*quiet, "no-data-collected"])
    root = os.path.abspath(root or os.getcwd())
    data_file = os.path.join(root, os.path.expanduser(config.data_file))
    private_folder = None
    if not config.parallel:
        # One data file, written by the session at its end: the workers' files wait
        # in a folder of their own until the template closes and merges them.
        private_folder = tempfile.mkdtemp(prefix="lambda-coverage-")
        data_file = os.path.join(private_folder, os.path.basename(data_file))
    source = None
    if config.source is not None:
        source = [
            os.path.join(root, entry) if os.path.exists(os.path.join(root, entry)) else entry
            for entry in config.source
        ]
    return CoverageHandoff(config.serialize(), root, data_file, source, private_folder)


def template_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables that would have the template measure itself."""
    return {
        name: value
        for name, value in environ.items()
        if name not in _STARTUP_VARIABLES and not name.startswith(_STARTUP_PREFIXES)
    }


def start_in_worker(handoff: CoverageHandoff) -> None:
    """Measure this process (just forked from the template) as the session measures."""
    global _measuring
    _start(handoff, in_worker=True)
    if _measuring is None:  # a fork of a worker inherits the hook (and _measuring)
        os.register_at_fork(after_in_child=_restart_in_fork)
    _measuring = handoff
    _save_first_at_exit()
    _save_at_exit()


def _restart_in_fork() -> None:
    """In a fork of a measuring process: measure afresh, into a data file of its own.

    The child's copy of its parent's coverage (the parent's data so far, the parent's
    file name) is stopped, never saved: the parent saves that data itself.
    """
    handoff = _measuring
    if handoff is None:
        return
    try:
        coverage: Any = sys.modules.get("coverage")
        inherited = coverage.Coverage.current() if coverage is not None else None
        if inherited is not None:
            inherited.stop()
        _start(handoff, in_worker=True)
        _save_first_at_exit()
    except Exception as exc:  # a fork must go on even if its coverage does not
        print(f"pytest-lambda-context: coverage not restarted: {exc!r}", file=sys.stderr)


def _save_first_at_exit() -> None:
    """Have :func:`save` run before the atexit handler of the coverage just started.

    atexit runs last-in first-out, and coverage's own handler (registered when it
    starts) stops and closes the data without saving it (a worker's "shutdown").
    """
    atexit.unregister(save)
    atexit.register(save)


def data_folder(handoff: CoverageHandoff | None) -> str | None:
    """The folder of the data files that this process, or what it forks, writes.

    ``handoff``: the template's, for a worker it forks; None in a worker, whose forks
    (SnapStart restores) measure with the worker's configuration.
    """
    measured = handoff or _measuring
    return None if measured is None else os.path.dirname(measured.data_file)


def warm_up(handoff: CoverageHandoff) -> None:
    """In the template: start and stop coverage once, measuring nothing, saving nothing.

    Starting coverage fills caches that the workers then inherit with the fork: the
    source lines of the stack it records, the interpreter's install paths it classifies
    files by, the patterns it compiles. A worker's start then costs a fraction.
    """
    cov = _start(handoff, in_worker=False)
    cov.stop()


def _start(handoff: CoverageHandoff, *, in_worker: bool) -> Any:
    from coverage import Coverage

    # The configuration's relative patterns are made absolute from the current folder
    # when coverage starts: the session's folder, not the template's.
    here = os.getcwd()
    os.chdir(handoff.root)
    try:
        config = _CONFIG_DATA_PREFIX + handoff.config
        if in_worker:
            cov = Coverage(config_file=config, data_suffix=_suffix())
            cov.set_option("run:data_file", handoff.data_file)
        else:
            cov = Coverage(config_file=config, data_file=None)  # no data file at all
        cov.set_option("run:parallel", True)
        if handoff.source is not None:
            cov.set_option("run:source", handoff.source)
        # The template applies no patch (it measures nothing); a worker takes the
        # session's, but those this module does itself.
        patches = set(_names(cov.get_option("run:patch"))) - _NOT_IN_WORKERS
        cov.set_option("run:patch", sorted(patches) if in_worker else [])
        quiet = _names(cov.get_option("run:disable_warnings"))
        cov.set_option("run:disable_warnings", [*quiet, *_QUIET])
        cov.start()
    finally:
        os.chdir(here)
    return cov


def _names(value: object) -> list[str]:
    return [str(name) for name in value] if isinstance(value, list) else []


def _suffix() -> str:
    # coverage's own parallel suffix (host, pid, random): unique for every process.
    return f"{socket.gethostname()}.pid{os.getpid()}.X{secrets.token_hex(3)}x"


def _save_at_exit() -> None:
    """Every process of the environment ends in os._exit: save the data first.

    Whichever coverage is current in the process that exits is saved: after a fork,
    _restart_in_fork has stopped the parent's copy and started the child's own.
    """
    real_exit = os._exit
    if getattr(real_exit, "__wrapped__", None) is not None:
        return  # a process forked from a measuring one: wrapped already

    def _exit_saving_coverage(status: int) -> NoReturn:
        save()
        real_exit(status)

    _exit_saving_coverage.__wrapped__ = real_exit  # type: ignore[attr-defined]
    os._exit = _exit_saving_coverage


def save() -> None:
    """Stop and save the coverage measuring this process, if any (never raises)."""
    coverage: Any = sys.modules.get("coverage")
    if coverage is None:
        return
    try:
        cov = coverage.Coverage.current()
        if cov is not None:
            cov.stop()
            cov.save()
    except Exception as exc:  # a worker's exit must not fail over its coverage data
        print(f"pytest-lambda-context: coverage data not saved: {exc!r}", file=sys.stderr)


def merge_into_session(handoff: CoverageHandoff) -> None:
    """Add the workers' data (private folder) to the session's; remove the folder."""
    folder = handoff.private_folder
    if folder is None:
        return
    try:
        coverage: Any = sys.modules.get("coverage")
        session = coverage.Coverage.current() if coverage is not None else None
        paths = sorted(glob.glob(glob.escape(handoff.data_file) + ".*"))
        if session is None or not paths:
            return
        from coverage import CoverageData
        from coverage.exceptions import CoverageWarning

        with warnings.catch_warnings():
            # get_data() checks the session's data so far ("No data was collected" when
            # the test process ran none of the source): the session checks again at
            # its end, with the workers' data in.
            warnings.simplefilter("ignore", CoverageWarning)
            data = session.get_data()
        for path in paths:
            if path.endswith("-journal"):
                continue
            worker = CoverageData(path)
            worker.read()
            data.update(worker)
            worker.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
