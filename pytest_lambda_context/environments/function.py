"""``LambdaFunction``: one function's configuration and the environments Lambda would run."""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from pytest_lambda_context.environments import test_side_patches
from pytest_lambda_context.environments.async_events import (
    ASYNC_REQUEST_LIMIT,
    AsyncEvent,
    EventQueue,
)
from pytest_lambda_context.environments.base import ExecutionEnvironment, encode_request
from pytest_lambda_context.environments.chaos import ChaosRouter
from pytest_lambda_context.environments.config import check_number
from pytest_lambda_context.environments.function_config import FunctionConfig
from pytest_lambda_context.environments.placeholders import check_placeholders, fill_placeholders
from pytest_lambda_context.environments.registry import environment_class
from pytest_lambda_context.environments.spec import InitializationType
from pytest_lambda_context.observe.connections import ConnectionEvent, ConnectionLog
from pytest_lambda_context.runtime.errors import (
    LambdaError,
    RequestTooLargeError,
    TooManyRequestsError,
    service_error,
    throttle_payload,
)
from pytest_lambda_context.runtime.invoke_headers import invoke_headers
from pytest_lambda_context.runtime.records import FunctionRecord, Invocation, Throttle

if TYPE_CHECKING:
    from pytest_lambda_context.environments.snapstart import SnapStart
    from pytest_lambda_context.environments.template import WorkerTemplate

__all__ = ["LambdaFunction"]


_log = logging.getLogger("pytest_lambda_context")
# REPORT lines each function puts on the pytest_lambda_context logger.
REPORT_LINES_LOGGED = 5


def _encode_async_request(event: Any) -> Any:
    """The event as the Invoke API takes an asynchronous one; RequestTooLargeError
    over its 1 MB limit."""
    __tracebackhide__ = True
    body = encode_request(event)
    size = len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > ASYNC_REQUEST_LIMIT:
        message = (
            f"Request must be smaller than {ASYNC_REQUEST_LIMIT} bytes for the "
            "InvokeFunction operation (an asynchronous invocation)"
        )
        raise RequestTooLargeError(service_error("RequestEntityTooLargeException", message))
    return body


class LambdaFunction:
    """A Lambda function under test: routes invocations to emulated execution environments."""

    def __init__(self, handler: str, **options: Any) -> None:
        """``options``: the fields of :class:`FunctionConfig` (``env``, ``timeout``,
        ``memory_mb``, ``isolation``, ...), each checked now."""
        self._start(FunctionConfig.build(handler, options))

    @classmethod
    def from_config(cls, config: FunctionConfig) -> LambdaFunction:
        """The function of a config already built (the plugin's fixtures wire theirs in)."""
        function = cls.__new__(cls)
        function._start(config)
        return function

    def _start(self, config: FunctionConfig) -> None:
        # Placeholders of fixtures are wired in by now: each must have its supplier.
        check_placeholders(config.env, config.placeholders)
        self.config = self.spec = config
        self.capabilities = config.capabilities
        # snap_start: the published version's snapshot (made at the first cold start).
        self._snap_start: SnapStart | None = None
        if not self.capabilities.in_test_process:
            # The function's modules as the test has them now: a later test-side patch
            # of one of them, which cannot reach a worker, is then noticed and said.
            test_side_patches.observe(config.code_root_prefix)
        self.environments: list[ExecutionEnvironment] = []
        self.invocations: list[Invocation] = []
        self.connections = ConnectionLog()
        # boto3/botocore clients that function code created (from the aws monitor).
        self.client_events: list[Any] = []
        self._env_numbers = itertools.count(1)
        # UUID-shaped request ids: a random head per function, a counter in the last group
        # (unique per function, and much cheaper than uuid4 on the hot path).
        head = secrets.token_hex(8)
        self._request_prefix = f"{head[:8]}-{head[8:12]}-4{head[12:15]}-8{head[15:16]}00-"
        self._request_numbers = itertools.count(1)
        self._closed = False
        self._resources: list[Callable[[], None]] = []
        self._held: set[str] = set()
        # REPORT lines logged so far (see record_invocation).
        self._reports_logged = 0
        self._template_lock = threading.Lock()
        # Process isolation: the template that forks this function's workers (the
        # plugin passes the session's; else the first environment starts one).
        self.worker_pool = config.worker_pool
        # Environments handed on to a later test: still reported as this function's.
        self._released: list[ExecutionEnvironment] = []
        # Requests refused past max_concurrency (TooManyRequestsException payloads).
        self.throttles: list[Throttle] = []
        # /tmp folders of environments Lambda reset, for the next ones (see keep_tmp).
        self._reset_tmps: list[str] = []
        # Asynchronous events waiting for their next attempt (invoke_async).
        self._events = EventQueue()
        # Chaos routing (--lambda-chaos, the lambda_chaos marker): its random choices.
        self._chaos = None if config.chaos_seed is None else ChaosRouter(config.chaos_seed)

    # -- configuration: ``config`` has it all; these are what reports show -------------
    @property
    def handler(self) -> str:
        return self.config.handler

    @property
    def function_name(self) -> str:
        return self.config.function_name

    @property
    def isolation(self) -> str:
        return self.config.isolation

    @property
    def timeout(self) -> float:
        return self.config.timeout

    @property
    def memory_mb(self) -> int:
        return self.config.memory_mb

    @property
    def code_root(self) -> str:
        return self.config.code_root

    def resolved_env(self) -> dict[str, str]:
        """The function's environment variables with ``{es_url}`` and the like filled in."""
        return fill_placeholders(self.config.env, self.config.placeholders)

    def config_key(self) -> tuple[Any, ...]:
        """What makes two functions the same for warm reuse across tests."""
        return self.config.reuse_key()

    # -- routing -------------------------------------------------------------------
    def invoke(
        self,
        event: Any,
        *,
        client_context: dict[str, Any] | None = None,
        identity: dict[str, str] | None = None,
        tenant_id: str | None = None,
    ) -> Any:
        """Invoke as Lambda routes: the most recently used idle environment, else a cold start.

        Past ``max_concurrency`` busy environments the request is throttled
        (TooManyRequestsError) and never reaches one. ``client_context`` (a dict: the
        Invoke API's ClientContext), ``identity`` (``{"cognitoIdentityId": ...,
        "cognitoIdentityPoolId": ...}``) and ``tenant_id`` reach the handler's context as
        on Lambda; with a ``tenant_id`` the request goes only to environments of that
        tenant (tenant isolation mode), a new one if none is idle.
        """
        __tracebackhide__ = True
        headers = invoke_headers(client_context, identity, tenant_id)
        body = encode_request(event)
        if (
            self.config.max_concurrency is not None
            and self._busy_count() >= self.config.max_concurrency
        ):
            raise self._throttle()
        environment = self._route(tenant_id)
        environment.bind_tenant(tenant_id)
        return environment._invoke(body, headers=headers)

    def invoke_async(self, event: Any, *, max_retry_attempts: int = 2) -> str:
        """Invoke asynchronously, as S3, SNS or EventBridge do (an ``Event`` invocation):
        returns the request id at once; nothing is raised for what the function does.

        The event runs now, routed as ``invoke`` routes. If it fails (an error, a
        timeout, the runtime exiting), Lambda retries it up to ``max_retry_attempts``
        times (0 to 2): about 1 and 2 minutes later on the function's clock, so the
        retries run in ``idle()``; each attempt has the same request id and is an
        ``Invocation`` with ``attempt`` 0, 1, 2. An event over 1 MB is a
        RequestTooLargeError. Attempts still waiting at ``close()`` never run.
        """
        __tracebackhide__ = True
        check_number("max_retry_attempts", max_retry_attempts, minimum=0, maximum=2, integer=True)
        self._check_open()
        body = _encode_async_request(event)
        request_id = self.next_request_id()
        self._events.add(
            AsyncEvent(
                request_id=request_id,
                body=body,
                attempt=0,
                retries_left=max_retry_attempts,
                due=self.config.clock.monotonic(),
            )
        )
        self._run_due_events()
        return request_id

    def _run_due_events(self) -> None:
        """Run the asynchronous events whose time has come; queue the retries of those
        that fail."""
        clock = self.config.clock
        while (event := self._events.take_due(clock.monotonic())) is not None:
            limit = self.config.max_concurrency
            if limit is not None and self._busy_count() >= limit:
                # Throttled: Lambda keeps the event and tries again later.
                event.due = clock.monotonic() + 1.0
                self._events.add(event)
                return
            try:
                self._route()._invoke(event.body, event.request_id, event.attempt)
            except LambdaError:
                retry = self._events.retry_of(event, clock.monotonic())
                if retry is not None:
                    self._events.add(retry)

    def _busy_count(self) -> int:
        return sum(1 for e in self.environments if e.busy)

    def _throttle(self) -> TooManyRequestsError:
        # Lambda's answer when the function's concurrency is used up.
        payload = throttle_payload()
        self.throttles.append(Throttle(self.next_request_id(), payload))
        return TooManyRequestsError(payload)

    def invoke_many(self, events: Iterable[Any], *, concurrency: int) -> list[Any]:
        """Invoke as if ``concurrency`` requests were in flight at once.

        At least ``concurrency`` environments exist afterwards (at most
        ``max_concurrency``) and the events are spread over them in turn; the requests
        beyond ``max_concurrency`` are throttled (TooManyRequestsError). Every event
        runs or is throttled; the first error is raised after all of them.
        """
        __tracebackhide__ = True
        check_number("concurrency", concurrency, minimum=1, integer=True)
        bodies = [encode_request(event) for event in events]
        allowed = concurrency
        if self.config.max_concurrency is not None:
            allowed = max(0, min(concurrency, self.config.max_concurrency - self._busy_count()))
        self._expire_idle()
        # An environment takes as many requests at once as it has runtime processes.
        needed = -(-allowed // (self.config.per_environment_concurrency or 1))
        if self._chaos is not None:
            targets = self._chaos.targets(self._chaos_idle(), needed)
        else:
            targets = self._idle_environments()[:needed]
        while len(targets) < needed:
            targets.append(self._new_environment("on-demand"))
        # In flight at once: the event at position i is the (i % concurrency)-th request
        # of its wave; those past the allowed ones are throttled.
        running = [i for i in range(len(bodies)) if i % concurrency < allowed]
        outcomes: list[Any] = [None] * len(bodies)
        if targets and running:
            results = self._run_spread(targets, [bodies[i] for i in running], allowed)
            for index, outcome in zip(running, results, strict=True):
                outcomes[index] = outcome
        for index in range(len(bodies)):
            if index % concurrency >= allowed:
                outcomes[index] = self._throttle()
        for outcome in outcomes:
            if isinstance(outcome, LambdaError):
                raise outcome
        return outcomes

    def _run_spread(
        self, targets: list[ExecutionEnvironment], events: list[Any], concurrency: int
    ) -> list[Any]:
        """Each event's result, or the LambdaError it ended with."""
        __tracebackhide__ = True
        # One lane per request in flight; lane i goes to environment i // per_environment.
        per_environment = -(-concurrency // len(targets))
        lanes: list[list[int]] = [[] for _ in range(concurrency)]
        for index in range(len(events)):
            lanes[index % concurrency].append(index)
        outcomes: list[Any] = [None] * len(events)
        interrupted = threading.Event()

        def run_lane(lane: int) -> None:
            environment = targets[lane // per_environment]
            for index in lanes[lane]:
                if interrupted.is_set():
                    return
                if not environment.can_take():  # shut down, or full for good
                    environment = self._new_environment("on-demand")
                try:
                    outcomes[index] = environment._invoke(events[index])
                except LambdaError as exc:
                    outcomes[index] = exc

        if self.capabilities.runs_in_parallel and concurrency > 1:
            # Worker processes really run at once: one thread drives each lane.
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                futures = [pool.submit(run_lane, lane) for lane in range(concurrency)]
                try:
                    # Wait in slices: one long wait can hold a Ctrl-C until all lanes end.
                    while wait(futures, timeout=0.1).not_done:
                        pass
                except BaseException:
                    # Interrupted: end the workers still busy, so each lane returns now.
                    interrupted.set()
                    for environment in list(self.environments):
                        environment.interrupt()
                    raise
                for future in futures:
                    future.result()
        else:
            # In one process the environments take turns, event by event.
            for index in range(len(events)):
                lane = index % len(targets)
                environment = targets[lane]
                if not environment.can_take():
                    environment = targets[lane] = self._new_environment("on-demand")
                try:
                    outcomes[index] = environment._invoke(events[index])
                except LambdaError as exc:
                    outcomes[index] = exc
        return outcomes

    def cold_start(self) -> ExecutionEnvironment:
        """A new environment, even if one is idle; its init runs at its first invocation."""
        __tracebackhide__ = True
        return self._new_environment("on-demand")

    def provision(self, count: int) -> list[ExecutionEnvironment]:
        """``count`` environments initialised ahead of traffic (provisioned concurrency)."""
        check_number("count", count, minimum=1, integer=True)
        if self.config.snap_start:
            raise ValueError(
                "provision(): Lambda does not support provisioned concurrency with SnapStart; "
                "restored environments start from the snapshot (see publish())"
            )
        created = [self._new_environment("provisioned-concurrency") for _ in range(count)]
        for environment in created:
            environment.init()
        return created

    def idle(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> None:
        """Let time pass while every environment is frozen.

        The clock handler code sees moves forward; environments idle longer than
        ``idle_timeout`` are shut down; proxies cut connections idle past their timeout.
        """
        total = seconds + minutes * 60 + hours * 3600
        check_number("idle time", total, minimum=0)
        self.config.clock.advance(total)
        self._expire_idle()
        if self._events:
            self._run_due_events()

    def _expire_idle(self) -> None:
        """Shut down environments idle past ``idle_timeout``, as Lambda reclaims them.

        Checked at each routing too: the clock is the session's, and another
        function's ``idle()`` may have moved it. Provisioned environments stay warm.
        """
        if self.config.idle_timeout is None:
            return
        now = self.config.clock.monotonic()
        for environment in self.environments:
            if (
                environment.state != "shutdown"
                and not environment.busy
                and environment.initialization_type != "provisioned-concurrency"
                and now - environment.last_used > self.config.idle_timeout
            ):
                environment.shutdown("idle timeout")

    def _idle_environments(self) -> list[ExecutionEnvironment]:
        live = [e for e in self.environments if e.state != "shutdown" and not e.busy]
        # Lambda favours the most recently used warm environment.
        live.sort(key=lambda e: (e.state == "warm", e.last_used), reverse=True)
        return live

    def _chaos_idle(self) -> list[ExecutionEnvironment]:
        """The idle environments, after chaos routing reclaimed some of them."""
        assert self._chaos is not None
        idle = self._idle_environments()
        for environment in self._chaos.recycled(idle):
            environment.shutdown("recycled (chaos routing)")
        return [e for e in idle if e.state != "shutdown"]

    def _route(self, tenant_id: str | None = None) -> ExecutionEnvironment:
        if self.config.idle_timeout is not None:
            self._expire_idle()
        if self._chaos is not None and tenant_id is None:
            chosen = self._chaos.choose(self._chaos_idle())
            return chosen if chosen is not None else self._new_environment("on-demand")
        # A busy environment (its handler is the caller, say) takes no second request;
        # an environment serves one tenant only (tenant isolation mode).
        for environment in reversed(self.environments):
            if (
                environment.state == "warm"
                and not environment.busy
                and environment.tenant_id == tenant_id
            ):
                best = environment
                for other in self.environments:
                    if (
                        other.state == "warm"
                        and not other.busy
                        and other.tenant_id == tenant_id
                        and other.last_used > best.last_used
                    ):
                        best = other
                return best
        for environment in self.environments:
            if (
                environment.state == "new"
                and not environment.busy
                and (
                    environment.tenant_id == tenant_id
                    or (environment.tenant_id is None and not environment.invocations)
                )
            ):
                return environment
        return self._new_environment("on-demand")

    def publish(self) -> Any:
        """Make the SnapStart snapshot now (init, then before-snapshot hooks), as
        publishing a version does; otherwise the first cold start makes it. Returns the
        snapshot (``init_duration_ms``, ``connections``); raises InitError if it failed."""
        __tracebackhide__ = True
        if not self.config.snap_start:
            raise ValueError(
                "publish() makes a SnapStart snapshot: create the function with "
                "snap_start=True (and isolation='process')"
            )
        self._check_open()
        return self._snapshots().publish()

    @property
    def snapshot(self) -> Any:
        """The SnapStart snapshot once made (None before, or without snap_start)."""
        return None if self._snap_start is None else self._snap_start.snapshot

    def _snapshots(self) -> SnapStart:
        if self._snap_start is None:
            from pytest_lambda_context.environments.snapstart import SnapStart

            self._snap_start = snap_start = SnapStart(
                self.spec, self, {**self.resolved_env(), **self.config.credentials}
            )
            self.add_finalizer(snap_start.release)
        return self._snap_start

    def _new_environment(self, initialization_type: InitializationType) -> ExecutionEnvironment:
        self._check_open()
        env_id = f"env-{next(self._env_numbers)}"
        environment: ExecutionEnvironment
        # The execution role's credentials are set by Lambda, like the reserved variables.
        variables = {**self.resolved_env(), **self.config.credentials}
        if self.config.per_environment_concurrency is not None:
            from pytest_lambda_context.environments.managed_instances import (
                ManagedInstanceEnvironment,
            )

            environment = ManagedInstanceEnvironment(
                self.spec, self, env_id, initialization_type, variables
            )
            self.environments.append(environment)
            environment.init()  # ahead of traffic, as Managed Instances start environments
            return environment
        if self.config.snap_start:
            from pytest_lambda_context.environments.snapstart import RestoredEnvironment

            environment = RestoredEnvironment(self.spec, self, env_id, variables, self._snapshots())
        else:
            # The /tmp of an environment Lambda reset, if one waits (see keep_tmp).
            try:  # (invoke_many's lanes make environments from several threads)
                tmp: str | None = self._reset_tmps.pop(0)
            except IndexError:
                tmp = None
            environment = environment_class(self.capabilities)(
                self.spec,
                self,
                env_id,
                initialization_type,
                variables,
                tmpdir=tmp,
                owns_tmpdir=True,
            )
        self.environments.append(environment)
        return environment

    def keep_tmp(self, path: str) -> None:
        if self.config.snap_start or self.config.per_environment_concurrency is not None:
            # Their environments make their /tmp their own way: nothing takes it on.
            shutil.rmtree(path, ignore_errors=True)
            return
        self._reset_tmps.append(path)

    def adopt(self, environment: ExecutionEnvironment) -> None:
        """Take over a live environment of an equal function (warm reuse across tests)."""
        self._check_open()
        environment.attach(self)
        self.environments.append(environment)
        number = int(environment.id.rpartition("-")[2])
        self._env_numbers = itertools.count(max(number + 1, next(self._env_numbers)))

    def release(self, environment: ExecutionEnvironment) -> None:
        """Stop managing ``environment`` without shutting it down (see ``adopt``)."""
        self.environments.remove(environment)
        self._released.append(environment)

    # -- what environments report (the FunctionSink they are given) ---------------
    def next_request_id(self) -> str:
        return f"{self._request_prefix}{next(self._request_numbers):012x}"

    def record_invocation(self, invocation: Invocation) -> None:
        self.invocations.append(invocation)
        if self._reports_logged <= REPORT_LINES_LOGGED:
            self._log_report(invocation)

    def _log_report(self, invocation: Invocation) -> None:
        # The first few REPORT lines on the logger, then one line saying where the rest
        # are: a failing test's captured log stays short whatever --log-level (a loop
        # of 500 invocations would otherwise put 500 lines in it).
        if not _log.isEnabledFor(logging.INFO):
            return
        self._reports_logged += 1
        if self._reports_logged <= REPORT_LINES_LOGGED:
            _log.info("%s", invocation.report_line)
        else:
            _log.info(
                "%s: further REPORT lines are not logged (a failing test's lambda-context "
                "invocations section, LambdaFunction.invocations and --lambda-report "
                "have them)",
                self.function_name,
            )

    def record_connection(self, event: ConnectionEvent) -> None:
        self.connections.add(event)

    def record_client(self, event: Any) -> None:
        self.client_events.append(event)

    def keep_until_close(self, key: str, acquire: Callable[[], Callable[[], None]]) -> None:
        if key not in self._held:
            self._held.add(key)
            self.add_finalizer(acquire())

    def worker_template(self) -> WorkerTemplate:
        """The session's template (the plugin passes it in), else one of the function's own."""
        template = self.worker_pool
        if template is None:
            with self._template_lock:
                template = self.worker_pool
                if template is None:
                    from pytest_lambda_context.environments.template import WorkerTemplate

                    template = self.worker_pool = WorkerTemplate()
                    self.add_finalizer(template.close)
                    # Started here, usually on the main thread (see WorkerTemplate._start),
                    # not on one of invoke_many's threads; it imports while the caller
                    # carries on.
                    template.start()
        return template

    # -- results -------------------------------------------------------------------
    @property
    def cold_starts(self) -> int:
        """Invocations that were cold starts (their init, or a SnapStart restore, in
        front); an init run ahead of traffic (``provision()``, ``init()``) is not one."""
        return sum(1 for invocation in self.invocations if invocation.cold)

    def clients_created(self, service: str | None = None) -> int:
        return sum(
            1
            for c in self.client_events
            if service is None or getattr(c, "service", None) == service
        )

    def add_finalizer(self, finalizer: Callable[[], None]) -> None:
        self._resources.append(finalizer)

    def close(self) -> None:
        """Shut down every environment and free what the function holds."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for environment in self.environments:
            try:
                environment.shutdown("closed")
            except Exception as exc:  # keep closing the rest
                errors.append(exc)
        while self._resources:
            try:
                self._resources.pop()()
            except Exception as exc:
                errors.append(exc)
        for path in self._reset_tmps:
            shutil.rmtree(path, ignore_errors=True)
        self._reset_tmps.clear()
        if errors:
            raise errors[0]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"LambdaFunction {self.function_name!r} is closed")

    def __enter__(self) -> LambdaFunction:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def to_dict(self, invocations: bool = True) -> FunctionRecord:
        """Plain data for reports; ``invocations=False`` leaves out the per-invocation records."""
        return {
            "function_name": self.function_name,
            "handler": self.handler,
            "isolation": self.isolation,
            "code_root": self.code_root,
            "timeout": self.timeout,
            "memory_mb": self.memory_mb,
            "environments": [e.to_dict(invocations) for e in [*self.environments, *self._released]],
            "invocations": len(self.invocations),
            "connections": self.connections.opened(),
        }

    def __repr__(self) -> str:
        return (
            f"<LambdaFunction {self.function_name} ({self.handler}, isolation={self.isolation}): "
            f"{len(self.environments)} environments, {len(self.invocations)} invocations>"
        )
