"""Lambda layers: folders that Lambda merges at ``/opt`` for the function's code.

Each layer folder holds what the layer's zip holds (``python/``, ``lib/``, ``bin/``, ...).
On Lambda they are extracted to ``/opt`` in order, a later layer's file replacing an
earlier one's, read-only; Python's runtimes put ``/opt/python/lib/python3.X/site-packages``
and ``/opt/python`` on ``sys.path`` after the function's own folder.

- Process isolation: the worker mounts the layers at ``/opt`` in its private mount
  namespace (one layer: a read-only bind; more: a read-only overlay, the last layer on
  top), so code that reads ``/opt/...`` literally finds them and cannot change them.
  Where the kernel refuses, the layers' own folders go on ``sys.path`` instead.
- Module isolation: the layers' folders go on ``sys.path`` in the same order, and their
  modules are imported afresh for each environment, like the function's own code.

Linux only for the mount; no pytest here: the mount runs in the worker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = [
    "MAX_LAYERS",
    "OPT",
    "check_layers",
    "layer_sys_paths",
    "mount_layers",
    "opt_sys_paths",
]

OPT = "/opt"
# Lambda takes at most five layers per function.
MAX_LAYERS = 5
_VERSION = f"python{sys.version_info[0]}.{sys.version_info[1]}"
_MS_RDONLY = 1
_MS_REMOUNT = 32
_MS_BIND = 4096


def check_layers(layers: object) -> tuple[str, ...]:
    """The layers as absolute folder paths, in order; a clear error for anything else."""
    if layers is None:
        return ()
    if isinstance(layers, (str, bytes, os.PathLike)):
        raise TypeError(
            f"layers must be a list of folders, not one path ({layers!r}): "
            f"layers=[{os.fspath(layers)!r}]"
        )
    if not isinstance(layers, Iterable):
        raise TypeError(f"layers must be a list of folder paths, not {layers!r}")
    given: list[object] = list(layers)
    folders: list[str] = []
    for layer in given:
        if not isinstance(layer, (str, os.PathLike)):
            raise TypeError(f"layers: {layer!r} is not a folder path (str or os.PathLike)")
        folder = os.path.abspath(os.fspath(layer))
        if not os.path.isdir(folder):
            raise ValueError(
                f"layers: {folder!r} is not a folder (a layer is the folder its zip "
                "would extract to, holding python/ and the like)"
            )
        if folder in folders:
            raise ValueError(f"layers: {folder!r} is given twice")
        if any(char in folder for char in ":,"):
            # The overlay mount's option string separates folders with them.
            raise ValueError(f"layers: {folder!r} holds ':' or ',', which a mount cannot take")
        folders.append(folder)
    if len(folders) > MAX_LAYERS:
        raise ValueError(f"layers: {len(folders)} given; Lambda takes at most {MAX_LAYERS}")
    return tuple(folders)


def _python_paths(root: str) -> list[str]:
    return [
        os.path.join(root, "python", "lib", _VERSION, "site-packages"),
        os.path.join(root, "python"),
    ]


def opt_sys_paths() -> list[str]:
    """What Lambda's Python runtime puts on ``sys.path`` for its layers."""
    return _python_paths(OPT)


def layer_sys_paths(layers: Iterable[str]) -> list[str]:
    """The layers' own folders in the order their merge at ``/opt`` would give: every
    ``site-packages`` first, then every ``python`` folder, the last layer first in each."""
    ordered = list(reversed(list(layers)))
    return [
        *(_python_paths(layer)[0] for layer in ordered),
        *(_python_paths(layer)[1] for layer in ordered),
    ]


# statvfs flags a bind mount inherits and a read-only remount must repeat (a user
# namespace may not drop them), with the mount flags that set them.
_LOCKED = (
    (os.ST_NOSUID, 2),  # MS_NOSUID
    (os.ST_NODEV, 4),  # MS_NODEV
    (os.ST_NOEXEC, 8),  # MS_NOEXEC
    (os.ST_NOATIME, 1024),  # MS_NOATIME
    (os.ST_NODIRATIME, 2048),  # MS_NODIRATIME
    (getattr(os, "ST_RELATIME", 4096), 1 << 21),  # MS_RELATIME
)
_MNT_DETACH = 2


def _under_opt(path: str) -> bool:
    return path == OPT or path.startswith(OPT + os.sep)


def mount_layers(layers: tuple[str, ...], needed: Iterable[str]) -> str | None:
    """Mount ``layers`` read-only at ``/opt`` (in the worker's own mount namespace).
    None on success, else why not (``/opt`` is then unchanged). ``needed``: paths the
    worker still reads (the interpreter, its libraries, the code): if one is under
    ``/opt`` (a Python from setup-python or conda, a venv in /opt), mounting over it
    would hide it, and the layers go on ``sys.path`` instead."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return f"layers at {OPT} need Linux mount namespaces (this is {sys.platform})"
    if not os.path.isdir(OPT):
        return f"this machine has no {OPT} folder to mount the layers on"
    hidden = sorted({p for p in needed if p and _under_opt(os.path.realpath(p))})
    if hidden:
        return f"{OPT} holds what the worker needs ({hidden[0]}): mounting there would hide it"
    libc = ctypes.CDLL(None, use_errno=True)
    opt = OPT.encode()
    if len(layers) == 1:
        source = os.fsencode(layers[0])
        if libc.mount(source, opt, None, _MS_BIND, None) != 0:
            return f"the kernel refused to mount the layers at {OPT} ({_error(ctypes)})"
        flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY
        found = os.statvfs(layers[0]).f_flag
        flags |= sum(mount_flag for stat_flag, mount_flag in _LOCKED if found & stat_flag)
        if libc.mount(None, opt, None, flags, None) != 0:
            reason = _error(ctypes)
            libc.umount2(opt, _MNT_DETACH)  # never leave it mounted writable
            return f"the kernel refused to make the layers at {OPT} read-only ({reason})"
        return None
    # overlayfs: the leftmost lower folder is on top, so the last layer goes first.
    options = "lowerdir=" + ":".join(reversed(layers))
    if libc.mount(b"overlay", opt, b"overlay", _MS_RDONLY, os.fsencode(options)) != 0:
        return f"the kernel refused to mount the layers at {OPT} ({_error(ctypes)})"
    return None


def _error(ctypes: Any) -> str:
    return os.strerror(ctypes.get_errno())
