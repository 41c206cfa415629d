"""URLs of services as they may be shown or written down."""

from __future__ import annotations

import re

__all__ = ["without_password"]


def without_password(url: str) -> str:
    """The URL as it may be shown or written down: its password replaced by ***."""
    return re.sub(r"(//[^/@:]*:)[^/]*@", r"\1***@", url, count=1)
