"""Where a handler's module is, when the import from the code root could not find it.

Lambda's message (``Unable to import module 'orders.handler': No module named
'orders'``) is right on Lambda, where the code root is the deployment package. Here the
likelier cause is that the plugin took the wrong folder for the code root (a handler
under ``lambda/`` or ``functions/``): the hint says which folder holds the module and
how to name it with ``code_root``. Looked for only after such a failure.
"""

from __future__ import annotations

import os
import re
from collections import deque

from pytest_lambda_context.runtime.records import ErrorPayload

__all__ = ["code_root_hint"]

# "No module named 'orders'" at the end of Lambda's Runtime.ImportModuleError message.
_MISSING = re.compile(r"No module named '([\w.]+)'$")
# Folders a deployment package is never in (and which can be large).
_SKIPPED = frozenset(
    {"__pycache__", "node_modules", "site-packages", "dist-packages", "build", "dist"}
)
_DEPTH = 4
_MAX_FOLDERS = 5000
_MAX_SHOWN = 3


def code_root_hint(handler: str, code_root: str, payload: ErrorPayload) -> str | None:
    """The hint for a ``Runtime.ImportModuleError`` that says the handler's own module
    (or a package above it) is missing; None for any other error, such as a module
    the function's code imports."""
    if payload.get("errorType") != "Runtime.ImportModuleError":
        return None
    module = handler.rpartition(".")[0].replace("/", ".")
    found = _MISSING.search(str(payload.get("errorMessage", "")))
    if not module or found is None:
        return None
    missing = found.group(1)
    if module != missing and not module.startswith(missing + "."):
        return None
    parts = module.split(".")
    top = os.path.join(code_root, parts[0])
    if os.path.isdir(top) or os.path.isfile(top + ".py"):
        return None  # the code root is right; Lambda's message says what is missing
    shown = "/".join(parts) + ".py"
    # Below the code root, then below the folder pytest runs in (an explicit but
    # wrong code_root, such as "src" for a package under lambda/).
    folders = _folders_holding(code_root, parts) or _folders_holding(os.getcwd(), parts)
    if not folders:
        return (
            f"The code root is {code_root} (the folder the function's code is imported "
            f"from); neither it nor a folder below it holds {shown}. Pass code_root= the "
            f"folder that holds {parts[0]}/ (or {parts[0]}.py) to the lambda_handler "
            "marker (relative to pytest's rootdir) or to LambdaFunction."
        )
    others = "".join(f" (also in {folder})" for folder in folders[1:_MAX_SHOWN])
    return (
        f"The code root is {code_root} (the folder the function's code is imported "
        f"from), and {shown} is not under it but under {folders[0]}{others}: pass "
        f'code_root="{folders[0]}" (or that folder relative to pytest\'s rootdir) to '
        "the lambda_handler marker or to LambdaFunction."
    )


def _holds(folder: str, parts: list[str]) -> bool:
    base = os.path.join(folder, *parts)
    return os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py"))


def _folders_holding(root: str, parts: list[str]) -> list[str]:
    """Folders below ``root`` (breadth first, a few levels, virtual environments and
    hidden folders left out) that hold the module ``parts``."""
    found: list[str] = []
    queue = deque([(root, 0)])
    seen = 0
    while queue and seen < _MAX_FOLDERS:
        folder, depth = queue.popleft()
        seen += 1
        if folder != root and _holds(folder, parts):
            found.append(folder)
            continue
        if depth >= _DEPTH:
            continue
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name in _SKIPPED or not entry.is_dir():
                continue
            if os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                continue
            queue.append((entry.path, depth + 1))
    return found
