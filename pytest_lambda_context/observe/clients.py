"""Counting the boto3/botocore clients that function code creates.

Every boto3 client and resource, and every botocore client, is made by
``botocore.session.Session.create_client``. While :func:`install` is in effect that
method is wrapped: when function code (an active scope) creates a client, a
:class:`ClientEvent` with the service and the line of user code is appended to the
scope's events, exactly as the socket monitor records connections.

botocore is never imported here: if it is not loaded yet when :func:`install` is
called, a meta-path hook patches ``botocore.session`` the moment something imports it,
so a session (or a worker process) that never touches boto3 pays nothing.

Clients created by function code also get three small event handlers that turn
failures which would otherwise be slow or cryptic into clear ones:

- under ``lambda_network = loopback`` a blocked connection or DNS lookup is raised at
  once as the guard's own error, instead of being retried by botocore for seconds and
  reported as "Could not connect to the endpoint URL";
- moto's "not implemented" signals (``NotImplementedError`` in-process, a 404 "Not yet
  implemented" for a service moto lacks, the 501 our moto server answers) become a
  :class:`MotoNotImplementedError` that names the service and the operation.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pytest_lambda_context.observe import scope as _scope
from pytest_lambda_context.observe.connections import user_frame
from pytest_lambda_context.observe.guard import BlockedLookupError, NetworkBlockedError
from pytest_lambda_context.observe.installation import Installation
from pytest_lambda_context.observe.scope import active_scope

__all__ = [
    "NOT_IMPLEMENTED_HEADER",
    "ClientEvent",
    "MotoNotImplementedError",
    "install",
    "installed",
    "uninstall",
]

# The moto server run by the aws fixture answers an operation moto lacks with a 501
# carrying this header (botocore retries a 500, not a 501).
NOT_IMPLEMENTED_HEADER = "x-lambda-context-not-implemented"


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """One boto3/botocore client created by function code."""

    function_name: str
    environment_id: str
    # None: created during the init phase (module import / init code).
    request_id: str | None
    # As given to boto3.client()/resource() or Session.create_client(): "s3", "dynamodb".
    service: str
    # "app/handler.py:12 in get_table", relative to the code root; None when no frame
    # of the function's code is on the stack.
    frame: str | None
    time: float

    def describe(self) -> str:
        phase = "init" if self.request_id is None else self.request_id
        where = self.frame or "no frame of the function's code on the stack"
        return f"{self.environment_id} {phase}: {self.service} client created at {where}"


class MotoNotImplementedError(NotImplementedError):
    """moto (behind the ``aws`` fixture) does not implement the operation called."""

    def __init__(self, service: str, operation: str, detail: str = "") -> None:
        self.service = service
        self.operation = operation
        self.detail = detail
        super().__init__(_not_implemented_message(service, operation, detail))

    def __reduce__(self) -> tuple[type[MotoNotImplementedError], tuple[str, str, str]]:
        return (type(self), (self.service, self.operation, self.detail))


def _not_implemented_message(service: str, operation: str, detail: str) -> str:
    try:
        from importlib.metadata import version

        moto = f"moto {version('moto')}"
    except Exception:  # metadata missing: say "moto" only
        moto = "moto"
    extra = f" ({detail})" if detail else ""
    return (
        f"{moto} does not implement the {service} operation {operation}{extra}. The aws "
        "fixture serves only what moto implements (https://docs.getmoto.org/en/latest/docs/"
        "services/); stub this call (botocore.stub.Stubber) or test it against a real "
        "service with --lambda-network=allow and without the aws fixture."
    )


# --- the per-client handlers -----------------------------------------------------------


def _blocked_in(exc: BaseException | None) -> BaseException | None:
    """The network guard's error somewhere in ``exc``'s chain (botocore wraps it twice)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (NetworkBlockedError, BlockedLookupError)):
            return current
        stack += [current.__cause__, current.__context__]
        inner = getattr(current, "kwargs", None)
        if isinstance(inner, dict) and isinstance(inner.get("error"), BaseException):
            stack.append(inner["error"])
    return None


def _fail_fast(caught_exception: BaseException | None = None, **_: object) -> None:
    """needs-retry: a connection the guard refused will be refused again; stop now."""
    blocked = _blocked_in(caught_exception)
    if blocked is not None:
        raise blocked from None


class _NotImplementedTranslator:
    """after-call / after-call-error: moto's "not implemented" as a clear error."""

    __slots__ = ("service",)

    def __init__(self, service: str) -> None:
        self.service = service

    @staticmethod
    def _operation(event_name: str, model: object) -> str:
        name = getattr(model, "name", None)
        return str(name) if name else event_name.rpartition(".")[2]

    def on_error(
        self, exception: BaseException | None = None, event_name: str = "", **_: object
    ) -> None:
        if isinstance(exception, NotImplementedError) and not isinstance(
            exception, MotoNotImplementedError
        ):
            operation = event_name.rpartition(".")[2]
            raise MotoNotImplementedError(self.service, operation, str(exception)) from exception

    def on_call(
        self,
        http_response: object = None,
        parsed: object = None,
        model: object = None,
        event_name: str = "",
        **_: object,
    ) -> None:
        status = getattr(http_response, "status_code", 200)
        if status < 400:
            return
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        message = str(error.get("Message", ""))
        headers = getattr(http_response, "headers", {}) or {}
        if status == 501 and headers.get(NOT_IMPLEMENTED_HEADER):
            raise MotoNotImplementedError(
                self.service, self._operation(event_name, model), headers[NOT_IMPLEMENTED_HEADER]
            )
        if status == 404 and message == "Not yet implemented":
            # moto in-process: no backend for this service at all.
            raise MotoNotImplementedError(
                self.service, self._operation(event_name, model), "no moto backend"
            )


def _add_handlers(client: object, service: str) -> None:
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None:
        return
    translator = _NotImplementedTranslator(service)
    events.register_first("needs-retry", _fail_fast)
    events.register("after-call-error", translator.on_error)
    events.register("after-call", translator.on_call)


# --- the patch -------------------------------------------------------------------------

# botocore is untyped (and never imported here): its create_client and the clients it
# makes are Any.
_lock = threading.Lock()
_original: Any = None  # Session.create_client as it was before the patch
_saved: object = None  # what Session's own dict held for create_client before the patch
_MISSING = object()
_local = threading.local()
_active = _scope.ACTIVE_SLOT


def _create_client(self: object, *args: object, **kwargs: object) -> Any:
    if _active[0] is None or getattr(_local, "creating", False):
        return _original(self, *args, **kwargs)
    scope = active_scope()
    if scope is None:
        return _original(self, *args, **kwargs)
    frame = user_frame(scope.code_root, sys._getframe(1))
    # Clients botocore makes while making this one (credential providers) are not
    # the function's own.
    _local.creating = True
    try:
        client = _original(self, *args, **kwargs)
    finally:
        _local.creating = False
    service = args[0] if args else kwargs.get("service_name")
    if not isinstance(service, str):
        service = str(client.meta.service_model.service_name)
    _add_handlers(client, service)
    scope.events.append(
        ClientEvent(
            scope.function_name,
            scope.environment_id,
            scope.request_id,
            service,
            frame,
            time.time(),
        )
    )
    return client


def _patch(session_module: ModuleType) -> None:
    global _original, _saved
    session_class = session_module.Session
    if vars(session_class).get("create_client") is _create_client:
        return
    _saved = vars(session_class).get("create_client", _MISSING)
    _original = session_class.create_client
    session_class.create_client = _create_client


def _unpatch() -> None:
    global _original, _saved
    module = sys.modules.get("botocore.session")
    if module is None or _original is None:
        return
    session_class = module.Session
    if vars(session_class).get("create_client") is _create_client:
        if _saved is _MISSING:
            delattr(session_class, "create_client")
        else:
            session_class.create_client = _saved
    _original = _saved = None


class _PatchingLoader(importlib.abc.Loader):
    """Runs botocore.session's real loader, then patches the module, then steps aside."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        with _lock:
            if _INSTALLATION.users > 0:
                _patch(module)


class _BotocoreHook(importlib.abc.MetaPathFinder):
    """Patches ``botocore.session`` when it is first imported (while installed)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "botocore.session":
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


_hook = _BotocoreHook()


def _apply() -> None:
    module = sys.modules.get("botocore.session")
    if module is not None:
        _patch(module)
    elif _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


def _remove() -> None:
    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)
    _unpatch()


# Start counting clients (refcounted), and stop: the last uninstall restores botocore.
_INSTALLATION = Installation("clients", _apply, _remove, _lock)
install = _INSTALLATION.install
uninstall = _INSTALLATION.uninstall
installed = _INSTALLATION.installed
