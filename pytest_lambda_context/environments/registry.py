"""The isolation kinds: what each can do, and which class runs its environments.

Code elsewhere asks an isolation what it can do (``isolation_of(name).in_test_process``),
never which one it is: adding a kind means an entry here and its own module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_lambda_context.environments.base import ExecutionEnvironment

__all__ = ["ISOLATIONS", "Isolation", "environment_class", "isolation_of"]


@dataclass(frozen=True, kw_only=True)
class Isolation:
    """One isolation kind and what its environments can do."""

    name: str
    #: The module and class that run its environments (imported on first use: process
    #: isolation's module pulls in what only it needs).
    module: str
    class_name: str
    #: Function code runs in pytest's own process: in-process patching (moto, a test's
    #: monkeypatch) reaches it, and a later test-side patch is not a surprise.
    in_test_process: bool
    #: Environments are forks of the session's template process (started at first use).
    needs_template: bool
    #: ``invoke_many``'s requests really run at once (one thread drives each lane).
    runs_in_parallel: bool
    #: Environments are frozen between invocations (threads stop, as on Lambda).
    can_freeze: bool
    #: SnapStart: environments can be restored from a snapshot of an initialised one.
    can_snapshot: bool
    #: Lambda Managed Instances: an environment can run several runtime processes.
    can_run_many_runtimes: bool
    #: Each environment can have its own literal /tmp (where the kernel allows it).
    private_tmp: bool
    #: A few words for option help and the header ("in-process").
    summary: str


ISOLATIONS: dict[str, Isolation] = {
    isolation.name: isolation
    for isolation in (
        Isolation(
            name="module",
            module="pytest_lambda_context.environments.module",
            class_name="ModuleEnvironment",
            in_test_process=True,
            needs_template=False,
            runs_in_parallel=False,
            can_freeze=False,
            can_snapshot=False,
            can_run_many_runtimes=False,
            private_tmp=False,
            summary="in-process",
        ),
        Isolation(
            name="process",
            module="pytest_lambda_context.environments.process",
            class_name="ProcessEnvironment",
            in_test_process=False,
            needs_template=True,
            runs_in_parallel=True,
            can_freeze=True,
            can_snapshot=True,
            can_run_many_runtimes=True,
            private_tmp=True,
            summary="a worker process per environment",
        ),
    )
}


def isolation_of(name: str) -> Isolation:
    """The isolation called ``name``; ValueError naming the valid ones otherwise."""
    found = ISOLATIONS.get(name) if isinstance(name, str) else None
    if found is None:
        hint = " (leave it out to use the lambda_isolation option)" if name is None else ""
        raise ValueError(
            f"isolation={name!r} is not valid; choose one of: {', '.join(ISOLATIONS)}{hint}"
        )
    return found


def environment_class(isolation: Isolation) -> type[ExecutionEnvironment]:
    environment: type[ExecutionEnvironment] = getattr(
        importlib.import_module(isolation.module), isolation.class_name
    )
    return environment
