"""What the monitors note about function code, as one type for the seams that carry it
(a phase's ``Scope.events``, the worker channel's replies, an environment's tally).

Only a name for type checkers: importing it loads none of the monitors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from pytest_lambda_context.observe.clients import ClientEvent
    from pytest_lambda_context.observe.connections import ConnectionEvent, ConnectLine
    from pytest_lambda_context.observe.drivers import DriversUsed

__all__ = ["ObservedEvent"]

# A connection opened (by the socket layer or a proxy), a client created, the C drivers
# a phase used, or a worker's note of the line that waited on a connection (folded
# into its ConnectionEvent by merge_seen_twice, never kept).
ObservedEvent: TypeAlias = "ConnectionEvent | ClientEvent | DriversUsed | ConnectLine"
