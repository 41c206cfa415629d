"""A fresh interpreter that runs this copy of the plugin, whatever the working directory holds.

``python -m`` and ``python -c`` put the working directory first on ``sys.path``: a
checkout of the plugin there (or any same-named package) would be imported in place of
the one the test process runs, and a worker would then import modules that its private
/tmp hides. The interpreters the plugin starts (the template, the /tmp probe) run
``-c`` code that takes the working directory off ``sys.path`` before importing anything,
with this package's folder first on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

__all__ = ["PACKAGE_PARENT", "python_command"]

# The folder that holds the pytest_lambda_context package the test process runs.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# -c inserts "" (the working directory) at sys.path[0], unless the interpreter runs
# with -P or PYTHONSAFEPATH (3.11+), when it inserts nothing.
_PRELUDE = "import sys\nif not getattr(sys.flags, 'safe_path', False): del sys.path[0]\n"


def python_command(
    code: str, args: list[str], environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``code`` (then ``args`` in sys.argv[1:])."""
    command = [sys.executable, "-c", _PRELUDE + code, *args]
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    return command, env
