"""A throwaway Lambda project on disk, shared by the benchmark scripts."""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

TRIVIAL = """
def handler(event, context):
    return {"ok": True}
"""

# A function whose own code is a few modules, like a small real handler package.
PACKAGE = {
    "fn/__init__.py": "",
    "fn/config.py": "import os\nTABLE = os.environ.get('TABLE', 'docs')\n",
    "fn/models.py": "from dataclasses import dataclass\n@dataclass\nclass Doc:\n    id: str\n    body: str\n",
    "fn/main.py": "from fn import config, models\nimport json\n" + TRIVIAL,
}


def make_project(files: dict[str, str] | None = None) -> Path:
    root = Path(tempfile.mkdtemp(prefix="plc-bench-"))
    for name, text in (files or PACKAGE).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root
