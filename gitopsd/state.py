"""Small durable records under the state directory.

gitopsd keeps little state of its own (Git and AWS hold the rest): the Git
cache, and per app the last revision of each service that reached a steady
state, so a failed rollout is rolled back to a revision known to be good
rather than to "the previous one". Writes are atomic (write, fsync, rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class JsonRecord:
    """One JSON object stored in one file; read lazily, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # A damaged record is as good as none: it is only a hint for rollbacks.
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def update(self, **values: Any) -> None:
        data = self.load()
        if all(data.get(k) == v for k, v in values.items()):
            return
        data.update(values)
        self.save(data)


class StateDir:
    """The layout of the state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def git_cache(self) -> Path:
        return self.root / "git"

    def last_good(self, app: str) -> JsonRecord:
        """Service name -> task-definition ARN last seen COMPLETED."""
        return JsonRecord(self.root / "apps" / app / "last-good.json")
