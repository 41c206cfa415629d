"""The datastores the plugin knows: name -> the module that holds its ``KIND``.

Module paths, not imports: the plugin lists the names (fixtures, options) at start-up
without loading any datastore's code. A new datastore is one module and one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_lambda_context.services.datastores.kind import DatastoreKind

__all__ = ["DATASTORES", "kind"]

DATASTORES: dict[str, str] = {
    "postgres": "pytest_lambda_context.services.datastores.postgres",
    "mysql": "pytest_lambda_context.services.datastores.mysql",
    "redis": "pytest_lambda_context.services.datastores.redis",
}


def kind(name: str) -> DatastoreKind:
    """The ``KIND`` of a registered datastore (KeyError naming the known ones)."""
    if name not in DATASTORES:
        raise KeyError(f"no datastore {name!r}; known: {', '.join(DATASTORES)}")
    found: DatastoreKind = importlib.import_module(DATASTORES[name]).KIND
    return found
