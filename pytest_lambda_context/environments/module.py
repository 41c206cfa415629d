"""``isolation="module"``: environments in the test process, swapped in and out.

Each environment owns a fresh import of the function's code (the modules under
``code_root``, and those of ``fresh_packages``); around each init or invocation those modules, ``os.environ``,
``sys.path`` and the temp folder are swapped in, and swapped out after. Third-party
libraries stay loaded and shared (but for ``fresh_packages``), which keeps a cold start close to the cost of
importing the function's own modules.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, Protocol, TypeVar, cast

from pytest_lambda_context.environments import shared_tmp
from pytest_lambda_context.environments.base import ExecutionEnvironment
from pytest_lambda_context.environments.layers import layer_sys_paths
from pytest_lambda_context.environments.leaks import (
    INSTALLED_FOLDERS,
    LEAK_WATCH,
    PLUGIN_FOLDER,
    IsolationLeakWarning,
    leak_message,
)
from pytest_lambda_context.environments.private_state import TRACKER, PrivateState
from pytest_lambda_context.observe import connections as _connections
from pytest_lambda_context.observe import descriptors as _descriptors
from pytest_lambda_context.observe import netguard as _netguard
from pytest_lambda_context.observe import shared_connections as _shared_connections
from pytest_lambda_context.observe import taps as _taps
from pytest_lambda_context.observe.drivers import SharedProcessDriverWatch
from pytest_lambda_context.observe.scope import ACTIVE_SLOT, THREAD_FLAGS, Scope, set_scope
from pytest_lambda_context.observe.taps import LIVE_PROXIES as _LIVE_PROXIES
from pytest_lambda_context.runtime.clock import ms_since, real_monotonic, shifted_clock
from pytest_lambda_context.runtime.context import LambdaContext, TraceHeaders, apply_headers
from pytest_lambda_context.runtime.handler import (
    ExitRequested,
    InitFailure,
    Outcome,
    PluginInterrupt,
    RealInterrupt,
    call_handler,
    crash_payload,
    import_handler,
    timeout_payload,
)
from pytest_lambda_context.runtime.invoke_headers import InvokeHeaders
from pytest_lambda_context.runtime.logging_setup import (
    UNHANDLED_EXCEPTION_WARNING,
    SwappedRuntimeLogging,
)
from pytest_lambda_context.runtime.marshal import ResultEncoder
from pytest_lambda_context.runtime.pytest_outcomes import is_test_outcome
from pytest_lambda_context.runtime.records import OutcomeKind

if TYPE_CHECKING:
    from typing import TypeAlias

    from pytest_lambda_context.environments.function_config import FunctionConfig
    from pytest_lambda_context.environments.spec import (
        FunctionSink,
        InitializationType,
    )
    from pytest_lambda_context.observe.events import ObservedEvent

    # What signal.signal takes and returns: a function, SIG_DFL/SIG_IGN, or None.
    _SignalHandler: TypeAlias = (
        Callable[[int, FrameType | None], object] | int | signal.Handlers | None
    )

__all__ = ["ModuleEnvironment"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _EnvironStore(Protocol):
    """os.environ and os.environb: their private data dict, which both share (encoded:
    bytes on POSIX)."""

    _data: dict[bytes, bytes]


# The real os.environ (function code may rebind the name), and os.environb, which
# shares its data dict and must follow the swap.
_ENVIRON = os.environ
_environb: _EnvironStore | None = getattr(os, "environb", None)


class _Timedout(PluginInterrupt):
    """Raised in handler code by SIGALRM; a BaseException so ``except Exception`` passes it on."""


def _module_path(module: ModuleType) -> str | None:
    path = getattr(module, "__file__", None)
    if path is None:
        locations = getattr(module, "__path__", None)
        if locations:
            path = next(iter(locations), None)
    return path if isinstance(path, str) else None


def is_function_module(
    name: str,
    module: ModuleType | None,
    code_root: str,
    fresh: frozenset[str] = frozenset(),
    layers: tuple[str, ...] = (),
) -> bool:
    """Is this module the function's own code, of one of its ``layers`` (folder prefixes),
    or of a package in ``fresh`` (``fresh_packages``)? Each is imported afresh on every
    cold start."""
    if module is None:
        return False
    if name.partition(".")[0] in fresh:
        return True
    path = _module_path(module)
    if path is None:
        return False
    return is_function_path(path, code_root, layers)


def is_function_path(path: str, code_root: str, layers: tuple[str, ...] = ()) -> bool:
    """Is the file at ``path`` the function's own code or one of its ``layers``'?"""
    # Third-party packages (site-packages, in the code root or a layer) stay shared, as
    # the test's own are: C extensions among them cannot be imported twice.
    return (
        (path.startswith(code_root) or (bool(layers) and path.startswith(layers)))
        and not path.startswith(PLUGIN_FOLDER)
        and not any(marker in path for marker in INSTALLED_FOLDERS)
    )


class _FunctionModules:
    """Which loaded modules are one function's own code (see is_function_module),
    decided once per module object: a cold start looks at every entry of sys.modules,
    over a thousand in a real session, and nearly all of them are the same each time.
    Module objects are remembered by id, never held (an evicted function module must be
    free to go)."""

    __slots__ = ("_code_root", "_fresh", "_known", "_layers")

    def __init__(self, spec: FunctionConfig) -> None:
        self._code_root = spec.code_root_prefix
        self._fresh = spec.fresh_packages
        self._layers = spec.layer_prefixes
        # name -> (a weak reference to the module judged, the verdict)
        self._known: dict[str, tuple[weakref.ref[ModuleType], bool]] = {}

    def loaded(self, modules: dict[str, ModuleType]) -> dict[str, ModuleType]:
        """The function's modules among ``modules`` (sys.modules), by name."""
        known = self._known
        found: dict[str, ModuleType] = {}
        for name, module in list(modules.items()):
            entry = known.get(name)
            if entry is not None and entry[0]() is module:
                if entry[1]:
                    found[name] = module
                continue
            verdict = is_function_module(name, module, self._code_root, self._fresh, self._layers)
            if verdict:
                found[name] = module
            # Not a module (None, or an object put there): judged each time.
            with contextlib.suppress(TypeError):
                known[name] = (weakref.ref(module), verdict)
        return found


_FUNCTION_MODULES: dict[tuple[str, frozenset[str], tuple[str, ...]], _FunctionModules] = {}


def _function_modules(spec: FunctionConfig) -> _FunctionModules:
    key = (spec.code_root_prefix, spec.fresh_packages, spec.layer_prefixes)
    known = _FUNCTION_MODULES.get(key)
    if known is None:
        known = _FUNCTION_MODULES[key] = _FunctionModules(spec)
    return known


class _Outer:
    """What an environment's swap-in replaced (the test's state, or the calling
    environment's when a handler invokes another function), put back by its swap-out.
    See :meth:`ModuleEnvironment._enter` for the steps and their order."""

    __slots__ = (
        "displaced",
        "environ_data",
        "invoking",
        "last_module",
        "module_count",
        "path",
        "scope",
        "tempdir",
    )

    def __init__(self) -> None:
        # 1. the copies of function modules set aside, and how many modules were loaded
        self.displaced: dict[str, ModuleType] = {}
        self.module_count = 0
        self.last_module = ""
        # 2. os.environ's data dict
        self.environ_data: dict[bytes, bytes] = {}
        # 3., 4.
        self.path: list[str] = []
        self.tempdir: str | None = None
        # 5. the scope that attributed connections before
        self.scope: Scope | None = None
        # 6. the thread the os._exit guard stopped before
        self.invoking: int | None = None


class ModuleEnvironment(ExecutionEnvironment):
    isolation = "module"

    def __init__(
        self,
        spec: FunctionConfig,
        sink: FunctionSink,
        env_id: str,
        initialization_type: InitializationType,
        variables: dict[str, str],
        *,
        tmpdir: str | None = None,
        owns_tmpdir: bool | None = None,
    ) -> None:
        super().__init__(spec, sink, env_id, initialization_type, variables, tmpdir, owns_tmpdir)
        # The SIGALRM handler and socket monitor are held for the function's lifetime.
        self._hooks_held = False
        self._modules: dict[str, ModuleType] = {}
        # The test's own copies of the function's modules that init did not import.
        self._shadowed: tuple[str, ...] = ()
        # The handler module's attribute as found (None: no init yet): not checked for
        # being callable, as in awslambdaric (calling it fails per invocation).
        self._handler: object = None
        self._handler_module: ModuleType | None = None
        self._context: LambdaContext | None = None
        variables = self._initial_environ()
        environ = os.environ
        # os.environ keeps its data in ``_data`` (encoded); swapping that dict in and
        # out is O(1), where setting variables one by one costs a putenv each.
        # (bytes on POSIX, where typeshed has os.environ's encoders return str)
        self._environ_data = cast(
            "dict[bytes, bytes]",
            {environ.encodekey(k): environ.encodevalue(v) for k, v in variables.items()},
        )
        # What the runtime installs: the log stream and the logging setup.
        self._runtime_logging = SwappedRuntimeLogging(variables)
        self._encoder = ResultEncoder(variables.get("AWS_EXECUTION_ENV"))
        self._trace_key = cast("bytes", environ.encodekey("_X_AMZN_TRACE_ID"))
        self._trace_headers = TraceHeaders(secrets.token_hex(8))
        # The last phase's log events (set when the environment's state is swapped out).
        self._output: list[str] = []
        code_root = spec.code_root
        # As Lambda's: the function's folder, then its layers' (see environments/layers.py).
        own = [code_root, *layer_sys_paths(spec.layers)]
        self._sys_path = [*own, *(p for p in sys.path if p not in own)]
        # C-level drivers (libpq, ...) loaded where this environment's code runs.
        self._drivers = SharedProcessDriverWatch()
        self._scope = Scope(
            spec.function_name, env_id, None, spec.code_root_prefix, [], spec.network
        )
        # Its working directory, umask, signal handlers, logging and the rest.
        self._private = PrivateState(code_root, self._environ_data)
        # What a swap-in replaced, for the swap-out to put back (see _enter).
        self._outer = _Outer()
        # What its code bound to os.environ in place of the real mapping (None: nothing).
        # Any: whatever object that is, put back as os.environ (typeshed's os.environ is
        # always the real mapping's type).
        self._environ_binding: Any = None
        # Holding LEAK_WATCH (from its first init to its shutdown), and its handler's file.
        self._watching_leaks = False
        self._handler_file = ""
        # Writes under the literal /tmp, which every module-isolated environment shares.
        shared_tmp.install()
        self._tmp_watch = self._scope.tmp_watch = shared_tmp.TmpWatch(
            (self._tmpdir, code_root, spec.tmp_root or "", *spec.host_paths)
        )

    # Module-isolated environments share one process: their phases (init, invocations,
    # shutdown) take turns under _PHASES, whichever test thread starts them, so that no
    # thread ever runs with another's os.environ, sys.modules or working directory left
    # in place. Re-entrant: a handler may invoke another function.
    def shutdown(self, reason: str = "shutdown") -> None:
        with _PHASES:
            super().shutdown(reason)

    def attach(self, sink: FunctionSink) -> None:
        super().attach(sink)
        self._hooks_held = False  # the new function holds them for its own lifetime

    @property
    def module(self) -> ModuleType:
        if self._handler_module is None:
            if self.state == "shutdown":
                raise RuntimeError(
                    f"{self.id} was shut down ({self.shutdown_reason}): its module is gone"
                )
            raise RuntimeError(f"{self.id} has not run its init phase yet (state {self.state!r})")
        return self._handler_module

    # -- swapping ----------------------------------------------------------------
    def _enter(self, request_id: str | None, evict: bool) -> None:
        """Swap this environment in, in the order below; :meth:`_exit` undoes the steps
        in exactly the reverse order. This list is the one place that order is written:

        1. ``sys.modules``: the function's modules in (a cold start sets aside every
           loaded copy). First, so that nothing later runs under another copy.
        2. ``os.environ`` (and ``os.environb``, which shares its data): the
           environment's data dict.
        3. ``sys.path`` (rebound, not copied: the environment's list keeps what its
           code did to it).
        4. ``tempfile.tempdir``.
        5. The scope that attributes connections, after settling the proxies (what
           reached them before is not this call's).
        6. The module-isolation hooks (held once per function) and the thread the
           ``os._exit`` guard stops.
        7. :class:`PrivateState`: working directory, umask, recursion limit,
           ``sys.excepthook``, signal handlers, the C environment and time zone (after
           2: its array is built from os.environ's data), warnings' filters and
           display, the logging registry and the root logger's ``__dict__``.
        8. The runtime's logging: ``sys.stdout``/``sys.stderr`` and the root handlers
           and level. Inside 7: they are written into the root ``__dict__`` that 7
           swapped in, so the runtime's handlers are the environment's, not the test's.

        What each step replaced is kept in ``self._outer`` (one per environment: an
        environment is never entered twice at once, a busy one takes no invocation).
        """
        outer = self._outer
        # 1. sys.modules
        modules = sys.modules
        if evict:
            # A cold start imports the function's code afresh: set aside every copy
            # of it that is loaded now (the test's own, or another environment's).
            displaced = _function_modules(self.spec).loaded(modules)
            for name in displaced:
                del modules[name]
        else:
            displaced = {name: modules[name] for name in self._modules if name in modules}
            for name in self._shadowed:
                # The test's copy of a module of the function's code that this
                # environment has not imported yet: set aside, so that a lazy import
                # in the handler imports it afresh instead of sharing the test's.
                if name not in self._modules:
                    module = modules.pop(name, None)
                    if module is not None:
                        displaced[name] = module
            modules.update(self._modules)
        outer.displaced = displaced
        # 2. os.environ (the real mapping, always: its data dict is what is swapped)
        outer.environ_data = _ENVIRON._data  # type: ignore[attr-defined]
        _ENVIRON._data = self._environ_data  # type: ignore[attr-defined]
        if _environb is not None:
            _environb._data = self._environ_data
        if self._environ_binding is not None:
            os.environ = self._environ_binding  # noqa: B003  # its code rebound os.environ
        # 3. sys.path
        outer.path = sys.path
        sys.path = self._sys_path
        # 4. tempfile.tempdir
        outer.tempdir = tempfile.tempdir
        tempfile.tempdir = self._tmpdir
        # 5. the scope: one per environment, renewed per call (cheaper than a new one)
        scope = self._scope
        scope.request_id = request_id
        scope.events = []
        if scope.shared:
            scope.shared = []
        scope.thread = threading.get_ident()
        if _LIVE_PROXIES:
            _taps.settle()
        outer.scope = set_scope(scope)
        # 6. hooks, and the thread os._exit stops
        if not self._hooks_held:
            self._sink.keep_until_close("module-isolation hooks", _HOOKS.hold)
            self._sink.keep_until_close("private state", TRACKER.hold)
            self._hooks_held = True
        hooks = _HOOKS
        outer.invoking = hooks.invoking
        hooks.invoking = threading.get_ident()
        # 7. private state, then 8. the runtime's logging
        self._private.enter()
        self._runtime_logging.enter()
        outer.module_count = len(modules)
        outer.last_module = next(reversed(modules))

    def _exit(self) -> list[ObservedEvent]:
        """Swap this environment out: :meth:`_enter`'s steps, in reverse."""
        outer = self._outer
        # 8., 7.
        self._output = self._runtime_logging.exit()
        self._private.exit()
        # 6.
        _HOOKS.invoking = outer.invoking
        # 5. What reached a proxy during this call is this call's, wherever C code
        # opened it.
        if _LIVE_PROXIES:
            _taps.settle()
        set_scope(outer.scope)
        scope = self._scope
        # 4., 3., 2.
        tempfile.tempdir = outer.tempdir
        self._sys_path = sys.path
        sys.path = outer.path
        saved_data = outer.environ_data
        if os.environ is not _ENVIRON:
            # Function code rebound os.environ (``os.environ = {...}``): that object is
            # the environment's, the test gets the real mapping back.
            self._environ_binding = os.environ
            os.environ = _ENVIRON  # noqa: B003  # the same mapping, put back
        _ENVIRON._data = saved_data  # type: ignore[attr-defined]
        if _environb is not None:
            _environb._data = saved_data
        # 1. sys.modules
        modules = sys.modules
        imported: list[str] = []
        events: list[ObservedEvent] = scope.events
        if len(modules) != outer.module_count or next(reversed(modules)) != outer.last_module:
            # sys.modules keeps insertion order: what this call imported is after the
            # entry that was last at entry (all of it, if function code deleted that one).
            last = outer.last_module
            for name in reversed(modules):
                if name == last:
                    break
                imported.append(name)
            code_root = self.spec.code_root_prefix
            fresh = self.spec.fresh_packages
            layers = self.spec.layer_prefixes
            for name in imported:
                module = modules.get(name)
                if is_function_module(name, module, code_root, fresh, layers):
                    self._modules[name] = module  # type: ignore[assignment]
            # C-level drivers this call imported, or that the function's modules use.
            events.extend(self._drivers.news(imported, self._modules.values()))
        for name in self._modules:
            modules.pop(name, None)
        modules.update(outer.displaced)
        watch = self._tmp_watch
        if watch.paths or watch.reads:
            self._warn_shared_tmp()
        if scope.shared:
            message = _shared_connections.message_for(scope.shared)
            self._warn_once(
                "shared connection warning", message, _shared_connections.SharedConnectionWarning
            )
        return events

    def _warn_shared_tmp(self) -> None:
        # Once per function for writes, once for reads: the first ones say it all.
        watch = self._tmp_watch
        name = self.spec.function_name
        if watch.paths:
            self._warn_once("shared /tmp warning", shared_tmp.warning_for(watch, name))
        if watch.reads:
            self._warn_once("shared /tmp read warning", shared_tmp.read_warning_for(watch, name))

    def _warn_once(
        self, key: str, message: str, category: type[Warning] = shared_tmp.SharedTmpWarning
    ) -> None:
        def warn() -> Callable[[], None]:
            self._pending_warnings.append((category, message))
            return _nothing

        self._sink.keep_until_close(key, warn)

    def _own_file(self, path: str) -> bool:
        """Whether the file at ``path`` is this environment's own code."""
        return is_function_path(path, self.spec.code_root_prefix, self.spec.layer_prefixes)

    def _own_module(self, name: str, module: ModuleType) -> bool:
        """Whether ``module`` is this environment's own copy (imported afresh for it)."""
        spec = self.spec
        return is_function_module(
            name, module, spec.code_root_prefix, spec.fresh_packages, spec.layer_prefixes
        )

    # -- init and invoke -----------------------------------------------------------
    def _wait_turn(self) -> None:
        """Wait for the phase running now to end. A thread that function code started
        waits at most this function's timeout: its own environment's handler may be
        waiting for it (joining it), which would never end."""
        if THREAD_FLAGS.__dict__.get("owner") is None:
            _PHASES.acquire()
            return
        if not _PHASES.acquire(timeout=self.spec.timeout):
            raise RuntimeError(
                f"{self.spec.function_name} was invoked from a thread that function code "
                "started, while another module-isolated invocation was running: in module "
                "isolation invocations take turns in the test process, and the running one "
                "may be waiting for this thread. Invoke from the handler's own thread, or use "
                "isolation='process'."
            )

    def _run_init(self, request_id: str | None) -> Outcome:
        if not _PHASES.acquire(False):
            self._wait_turn()
        try:
            return self._run_init_now(request_id)
        finally:
            _PHASES.release()

    def _run_init_now(self, request_id: str | None) -> Outcome:
        limit = self.phase_limit
        # A retried init starts from scratch, as in a restarted runtime.
        self._modules.clear()
        self._runtime_logging.restart()
        spec = self.spec
        if not self._watching_leaks:
            LEAK_WATCH.join(spec.function_name)
            self._watching_leaks = True
        # request_id None in the scope: what init code opens belongs to the init phase,
        # even when an invocation triggered it (the payloads still name the request).
        self._enter(None, evict=True)
        patchable = LEAK_WATCH.patch_watch.before(self._own_module, self._own_file)
        started = real_monotonic()
        outcome: Outcome
        try:
            with shifted_clock(spec.clock.shift, spec.code_root_prefix):
                self._handler, self._handler_module = _with_timeout(
                    limit, import_handler, spec.handler
                )
        except InitFailure as failure:
            outcome = Outcome(
                OutcomeKind.INIT_ERROR,
                payload=failure.payload,
                exc=failure.cause,
                duration_ms=ms_since(started),
            )
            # What awslambdaric logs when the handler cannot be loaded.
            logging.warning(UNHANDLED_EXCEPTION_WARNING)
            self._runtime_logging.report_error(failure.payload)
        except _Timedout:
            payload = timeout_payload(request_id, limit, init=True)
            outcome = Outcome(
                OutcomeKind.INIT_ERROR, payload=payload, duration_ms=ms_since(started)
            )
        except (PluginInterrupt, RealInterrupt):
            self._exit()
            raise
        except BaseException as exc:
            if is_test_outcome(exc):  # pytest.skip/fail in init code: the test's outcome
                self._exit()
                raise
            # Init code that exits (or raises KeyboardInterrupt, GeneratorExit...) ends
            # the runtime: an init error, as on Lambda.
            outcome = Outcome(
                OutcomeKind.RUNTIME_EXIT,
                payload=crash_payload(exc, request_id),
                exc=exc,
                duration_ms=ms_since(started),
            )
        else:
            outcome = Outcome(OutcomeKind.OK, duration_ms=ms_since(started))
        if _HOOKS.forked:
            _end_forked_child(outcome)
        LEAK_WATCH.patch_watch.after(patchable)
        set_aside = list(self._outer.displaced)
        outcome.events = self._exit()
        outcome.output = self._output
        if outcome.kind is OutcomeKind.OK:
            self._handler_file = getattr(self._handler_module, "__file__", None) or ""
            packages = {name.partition(".")[0] for name in self._modules}
            self._shadowed = tuple(
                name
                for name in set_aside
                if name not in self._modules and name.partition(".")[0] in packages
            )
        else:
            self._handler = self._handler_module = None
        return outcome

    def _run_invoke(
        self, request_id: str, event: Any, deadline_ms: float, headers: InvokeHeaders | None
    ) -> Outcome:
        __tracebackhide__ = True  # pytest shows the user's frames, not the plugin's
        spec = self.spec
        if self._context is None:
            self._context = LambdaContext(
                aws_request_id=request_id,
                function_name=spec.function_name,
                memory_limit_in_mb=spec.memory_mb,
                log_stream_name=self.log_stream_name,
                region=spec.region,
                deadline_ms=deadline_ms,
            )
        context = LambdaContext.renewed(self._context, request_id, deadline_ms)
        # As the runtime does for each invocation: the request id (and tenant) for log
        # records, and a new X-Ray trace header in the environment.
        log = self._runtime_logging.log
        log.request_id = request_id
        if headers is not None:
            apply_headers(context, headers)
            log.tenant_id = headers.tenant_id
        elif log.tenant_id is not None:
            log.tenant_id = None
        self._environ_data[self._trace_key] = self._trace_headers.next()
        # Acquired and released by hand (see shutdown): a with block costs more here.
        phases = _PHASES
        if not phases.acquire(False):
            self._wait_turn()
        try:
            self._enter(request_id, evict=False)
        except BaseException:
            phases.release()
            raise
        # Code that sets up lazily patches libraries in its first invocation.
        patchable = (
            None
            if self.invocations
            else LEAK_WATCH.patch_watch.before(self._own_module, self._own_file)
        )
        outcome: Outcome
        try:
            if spec.clock.shift:
                with shifted_clock(spec.clock.shift, spec.code_root_prefix):
                    outcome = _with_timeout(
                        spec.timeout,
                        call_handler,
                        self._handler,
                        event,
                        context,
                        request_id,
                        self._encoder,
                    )
            else:  # the common case, without a context manager's cost
                outcome = _with_timeout(
                    spec.timeout,
                    call_handler,
                    self._handler,
                    event,
                    context,
                    request_id,
                    self._encoder,
                )
            if outcome.kind in (OutcomeKind.HANDLER_ERROR, OutcomeKind.MARSHAL_ERROR):
                self._runtime_logging.report_error(outcome.payload)  # type: ignore[arg-type]
            if _HOOKS.forked:
                _end_forked_child(outcome)
        except _Timedout:
            payload = timeout_payload(request_id, spec.timeout)
            outcome = Outcome(
                OutcomeKind.TIMEOUT, payload=payload, duration_ms=spec.timeout * 1000.0
            )
        finally:
            if _HOOKS.forked:  # an interrupt on its way out of a forked child
                _end_forked_child(None)
            if patchable is not None:
                LEAK_WATCH.patch_watch.after(patchable)
            try:
                events = self._exit()
            finally:
                phases.release()
        outcome.events = events
        outcome.output = self._output
        return outcome

    def _run_sigterm_handler(self, grace: float) -> None:
        """Lambda's shutdown phase with extensions: the SIGTERM handler this
        environment's code installed runs, in the environment, for at most ``grace``
        seconds (the code's own threads are not stopped: see the docs)."""
        handler = self._private.signals.get(signal.SIGTERM)
        if not callable(handler):
            return
        self._enter(None, evict=False)
        try:
            _with_timeout(grace, handler, signal.SIGTERM, None)
        except (PluginInterrupt, RealInterrupt):
            self._exit()
            raise
        except BaseException:
            pass
        self.sigterm_handled = True
        self._collect(self._exit(), None)

    def _release(self) -> None:
        grace = self.shutdown_grace()
        if grace and self._handler_module is not None:
            self._run_sigterm_handler(grace)
        # As when Lambda ends an environment: its connections close now (on their
        # servers' side too, unless it was discarded whole), and nothing of its code
        # stays reachable from the test process.
        self._leave_connections_open(self._scope)
        _connections.close_sockets(self._scope)
        _descriptors.release(self._scope)
        self._modules.clear()
        self._handler = None
        self._handler_module = None
        self._context = None
        self._outer = _Outer()  # nothing of the test's kept alive by a gone environment
        if self._owns_tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._private.release()
        if TRACKER.environ is None:
            self._restore_c_environment()
        if self.c_drivers:
            # Only where its code used one: a full collection costs tens of
            # milliseconds in a large test process (120 ms with 1,200 modules).
            _collect_c_connections()
        if self._watching_leaks:
            self._watching_leaks = False
            # Last, after everything else is put back: with filterwarnings=error the
            # warning is raised here.
            leaks, functions = LEAK_WATCH.leave()
            if leaks:
                warnings.warn_explicit(
                    leak_message(functions, leaks),
                    IsolationLeakWarning,
                    self._handler_file or self.spec.code_root,
                    1,
                )

    def _restore_c_environment(self) -> None:
        # Handler code that set os.environ also called putenv on the process's C
        # environment; put back what the test process had.
        current = _ENVIRON._data  # type: ignore[attr-defined]
        for key, value in self._environ_data.items():
            if key not in current:
                os.unsetenv(key)
            elif current[key] != value:
                os.putenv(key, current[key])
        for key, value in current.items():
            if key not in self._environ_data:  # deleted by the function's code
                os.putenv(key, value)


class _ProcessHooks:
    """The SIGALRM handler and the socket monitor, installed while a function uses them.

    Installing them once per function, not per invocation, keeps a warm invocation
    cheap; the function's close() removes them, so each test ends as it began.
    ITIMER_REAL is one timer for the whole process: another tool's alarm
    (pytest-timeout, say) that is pending when an invocation starts keeps its time.
    """

    def __init__(self) -> None:
        self.users = 0
        self.armed = False
        # When our timer is due (monotonic), while an invocation runs.
        self.our_due = 0.0
        # Someone else's pending alarm during an invocation: when due, and its interval.
        self.foreign_due: float | None = None
        self.foreign_interval = 0.0
        # Our timer left pending after an invocation ended in time (see _with_timeout).
        self.stray_due: float | None = None
        self.previous_handler: _SignalHandler = None
        self.previous_sigint: _SignalHandler = None
        self.main_thread = threading.main_thread()
        self.main_ident = self.main_thread.ident
        # The thread running function code now (None: none), and the real os._exit.
        self.invoking: int | None = None
        # This process is a child that function code forked (see _after_fork).
        self.forked = False
        self.pid = os.getpid()
        self.real_exit: Callable[[int], NoReturn] = os._exit

    def acquire(self) -> None:
        if self.users == 0:
            # The guard first: the socket monitor calls through to what it wraps.
            _netguard.install()
            _connections.install()
            _descriptors.install()
            _shared_connections.install()
            self.pid = os.getpid()
            self.real_exit = os._exit
            os._exit = self._exit_guard  # type: ignore[assignment]
            # Someone else setting ITIMER_REAL replaces our leftover timer: seen here,
            # so that a warm invocation can count on that timer without a system call.
            signal.setitimer = self._tracked_setitimer
            signal.alarm = self._tracked_alarm
            atexit.register = _function_atexit  # type: ignore[assignment]
            if threading.current_thread() is self.main_thread:
                self.previous_handler = signal.signal(signal.SIGALRM, self._alarm)
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    self.previous_sigint = signal.signal(signal.SIGINT, _real_interrupt)
        self.users += 1

    def _tracked_setitimer(
        self, which: int, seconds: float, interval: float = 0.0
    ) -> tuple[float, float]:
        if which == signal.ITIMER_REAL:
            self.stray_due = None  # no longer ours
        return _real_setitimer(which, seconds, interval)

    def _tracked_alarm(self, seconds: int) -> int:
        self.stray_due = None
        return _real_alarm(seconds)

    def _exit_guard(self, status: int) -> None:
        # Only function code on the invoking thread of this process is stopped: a
        # forked child, and other threads (pytest-timeout's), really exit.
        if self.invoking == threading.get_ident() and os.getpid() == self.pid:
            raise ExitRequested(status)
        self.real_exit(status)

    def hold(self) -> Callable[[], None]:
        """Acquire; the returned callable releases (what a function's finalizer runs)."""
        self.acquire()
        return self.release

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            _shared_connections.uninstall()
            _descriptors.uninstall()
            _connections.uninstall()
            _netguard.uninstall()
            if self.stray_due is not None:
                delay, _ = signal.getitimer(signal.ITIMER_REAL)
                # With no handler of anyone's to restore, a pending alarm can only be
                # our leftover, and left armed it would kill the process: disarm it,
                # however late the reading (a loaded machine can pause us between the
                # two clock reads for longer than _SAME_TIMER).
                if delay and (
                    not callable(self.previous_handler)
                    or abs(_real_monotonic() + delay - self.stray_due) < _SAME_TIMER
                ):
                    _real_setitimer(signal.ITIMER_REAL, 0)
                self.stray_due = None
            if self.previous_handler is not None:
                signal.signal(signal.SIGALRM, self.previous_handler)
                self.previous_handler = None
            if self.previous_sigint is not None:
                if signal.getsignal(signal.SIGINT) is _real_interrupt:
                    signal.signal(signal.SIGINT, self.previous_sigint)
                self.previous_sigint = None
            if os._exit == self._exit_guard:
                os._exit = self.real_exit  # type: ignore[assignment]
            if signal.setitimer == self._tracked_setitimer:
                signal.setitimer = _real_setitimer
            if signal.alarm == self._tracked_alarm:
                signal.alarm = _real_alarm
            if atexit.register is _function_atexit:  # type: ignore[comparison-overlap]
                atexit.register = _real_atexit_register

    def _alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            now = _real_monotonic()
            if self.foreign_due is not None and now >= self.foreign_due - 0.001:
                # The other tool's alarm came first: ours is re-armed for what is left.
                self.foreign_due = None
                _real_setitimer(signal.ITIMER_REAL, max(self.our_due - now, 0.001))
                self._call_previous(signum, frame)
                return
            if self.stray_due is not None and now < self.our_due - 0.001:
                # Our leftover timer, which this invocation kept (see _with_timeout):
                # re-armed for what is left of the invocation's time.
                _real_setitimer(signal.ITIMER_REAL, self.our_due - now)
                self.stray_due = self.our_due
                return
            raise _Timedout()
        if self.stray_due is not None:
            self.stray_due = None  # ours, from an invocation that ended in time
            return
        self._call_previous(signum, frame)

    def _call_previous(self, signum: int, frame: FrameType | None) -> None:
        previous = self.previous_handler
        if callable(previous):
            previous(signum, frame)


def _nothing() -> None:
    pass


def _function_atexit(
    func: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
) -> Callable[_P, _R]:
    """``atexit.register`` while module-isolated functions exist: a callback that
    function code registers never runs, as on Lambda, which kills the runtime; at
    pytest's exit it would run after the summary (a library that function code
    imports first keeps its own, for the test process that keeps the library)."""
    scope = ACTIVE_SLOT[0]
    if scope is not None and sys._getframe(1).f_code.co_filename.startswith(scope.code_root):
        return func
    return _real_atexit_register(func, *args, **kwargs)


def _after_fork() -> None:
    # In the child of a fork: made by function code (the invoking thread forked), it
    # must end where the handler returns, never run the rest of the test session.
    hooks = _HOOKS
    if hooks.invoking is not None and hooks.invoking == threading.get_ident():
        hooks.forked = True


def _end_forked_child(outcome: Outcome | None) -> None:
    """End a forked child of function code, with the status Python would give it: 0 when
    the handler returned, ``sys.exit``'s when it exited, 1 when it raised."""
    status = 1
    if outcome is not None:
        if outcome.kind is OutcomeKind.OK:
            status = 0
        elif isinstance(outcome.exc, SystemExit):
            code = outcome.exc.code
            if code is None:
                status = 0
            elif isinstance(code, int):
                status = code & 0xFF
            else:
                print(code, file=sys.__stderr__)
        elif outcome.exc is not None:
            import traceback  # (loaded already: pytest uses it)

            traceback.print_exception(outcome.exc, file=sys.__stderr__)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(BaseException):  # ending regardless
            stream.flush()  # type: ignore[union-attr]
    _HOOKS.real_exit(status)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _collect_c_connections() -> None:
    """Free what the environment's code held through C drivers, now.

    A connection that C code opened (libpq) closes only when its object is freed, and
    the function's modules hold it in reference cycles: without a collection it would
    close at some later test, where psycopg's "deleted while still open"
    ResourceWarning would land. On Lambda the environment simply ends: no warning.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _real_interrupt(signum: int, frame: FrameType | None) -> None:
    # Python's own SIGINT handler, but the KeyboardInterrupt says it really arrived: it
    # stops pytest, where one that function code raises is the function's crash.
    raise RealInterrupt()


def _real_monotonic() -> float:
    # Not time.monotonic: inside a shifted clock freezegun has replaced it, and the
    # timer's bookkeeping must be on the clock ITIMER_REAL runs on.
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# The real timer functions (_ProcessHooks replaces the module's while it is held).
_real_setitimer = signal.setitimer
_real_alarm = signal.alarm
_real_atexit_register = atexit.register
_HOOKS = _ProcessHooks()
# Module-isolated phases take turns (see ModuleEnvironment._invoke).
_PHASES = threading.RLock()
# Two readings of one timer agree within this much (seconds).
_SAME_TIMER = 0.01


def _with_timeout(timeout: float, call: Callable[..., _R], *args: object) -> _R:
    """Run ``call`` and interrupt it with SIGALRM after ``timeout`` seconds.

    Signals reach only the main thread, and only between bytecodes: elsewhere, or in a
    long C call, the handler runs to completion (see docs: timeouts).
    """
    __tracebackhide__ = True
    hooks = _HOOKS
    if hooks.previous_handler is None or threading.get_ident() != hooks.main_ident:
        return call(*args)
    stray = hooks.stray_due
    if stray is not None:
        now = _real_monotonic()
        if now < stray <= now + timeout:
            # Our leftover timer is pending (nobody set ITIMER_REAL since: see
            # _tracked_setitimer) and due before this invocation's time is up: kept as
            # it is, without a system call; when it fires, _alarm re-arms it for the rest.
            hooks.our_due = now + timeout
            hooks.armed = True
            try:
                return call(*args)
            finally:
                hooks.armed = False
    previous_delay, previous_interval = _real_setitimer(signal.ITIMER_REAL, timeout)
    now = _real_monotonic()
    if hooks.stray_due is not None:
        if previous_delay and abs(now + previous_delay - hooks.stray_due) < _SAME_TIMER:
            previous_delay = previous_interval = 0.0  # only our own leftover was pending
        hooks.stray_due = None
    hooks.our_due = now + timeout
    if previous_delay:
        hooks.foreign_due = now + previous_delay
        hooks.foreign_interval = previous_interval
        if previous_delay < timeout:
            _real_setitimer(signal.ITIMER_REAL, previous_delay)  # theirs comes first
    hooks.armed = True
    try:
        return call(*args)
    finally:
        hooks.armed = False
        if hooks.foreign_due is not None:
            # Theirs is still to come: it gets back what is left of its time.
            left = hooks.foreign_due - _real_monotonic()
            _real_setitimer(signal.ITIMER_REAL, max(left, 0.001), hooks.foreign_interval)
            hooks.foreign_due = None
        elif previous_delay and hooks.foreign_interval:
            # Theirs fired during the call and repeats: it goes on repeating.
            _real_setitimer(signal.ITIMER_REAL, hooks.foreign_interval, hooks.foreign_interval)
        else:
            # Ours is left armed: disarming costs a system call per invocation, and an
            # alarm that fires later, with nothing armed, is ignored (see _alarm).
            hooks.stray_due = hooks.our_due
