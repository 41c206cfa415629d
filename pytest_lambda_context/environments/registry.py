"""Which class runs an environment of each isolation (imported on first use)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_lambda_context.environments.base import ExecutionEnvironment

__all__ = ["ISOLATION_CLASSES", "environment_class"]

# Lazy: process isolation's module pulls in what only it needs.
ISOLATION_CLASSES = {
    "module": ("pytest_lambda_context.environments.module", "ModuleEnvironment"),
    "process": ("pytest_lambda_context.environments.process", "ProcessEnvironment"),
}


def environment_class(isolation: str) -> type[ExecutionEnvironment]:
    module_name, class_name = ISOLATION_CLASSES[isolation]
    environment: type[ExecutionEnvironment] = getattr(
        importlib.import_module(module_name), class_name
    )
    return environment
