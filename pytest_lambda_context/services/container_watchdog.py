"""Removes a container of the plugin's once the test process that started it is gone,
however it went (SIGKILL included): a server the plugin starts never outlives its session.

Run by :class:`~pytest_lambda_context.services.docker_engine.RunningContainer` as
``python -m pytest_lambda_context.services.container_watchdog ENGINE_URL CONTAINER_ID``
in a session of its own, with a pipe from the test process on its standard input: end of
file there means the test process is gone, and the container is removed (a session that
ends normally removes it itself and ends this process first).
"""

from __future__ import annotations

import signal
import sys

__all__ = ["main"]


def main(argv: list[str]) -> int:
    engine_url, container_id = argv
    # Only the pipe's end of file decides: not a Ctrl-C meant for pytest.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    from pytest_lambda_context.services.docker_engine import remove_container

    remove_container(engine_url, container_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
