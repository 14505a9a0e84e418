"""Where job media waits for the worker that runs it.

A directory shared by API and workers (the default; a network filesystem for
several hosts). The interface is small on purpose so object storage can
replace it: put a local file under a key, get a local path back, delete.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
from typing import Any

from understanding.domain import InvalidInput, NotFound

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class BlobStore:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> pathlib.Path:
        if not _KEY.match(key):
            raise InvalidInput("is not a valid blob key", field="upload_id")
        return self.root / key

    def put(self, key: str, source: pathlib.Path, meta: dict[str, Any]) -> None:
        """Move `source` (a spool file on the same filesystem) under `key`."""
        target = self._path(key)
        os.replace(source, target) if source.parent.stat().st_dev == self.root.stat().st_dev else shutil.move(
            source, target
        )
        (self.root / f"{key}.json").write_text(json.dumps(meta))

    def meta(self, key: str) -> dict[str, Any]:
        try:
            return dict(json.loads((self.root / f"{self._path(key).name}.json").read_text()))
        except FileNotFoundError:
            raise NotFound(f"no upload {key!r}", field="upload_id") from None

    def path(self, key: str) -> pathlib.Path:
        path = self._path(key)
        if not path.exists():
            raise NotFound(f"no media stored under {key!r}", field="upload_id")
        return path

    def rename(self, key: str, new_key: str) -> None:
        os.replace(self._path(key), self._path(new_key))
        os.replace(self.root / f"{key}.json", self.root / f"{new_key}.json")

    def delete_meta(self, key: str) -> None:
        (self.root / f"{self._path(key).name}.json").unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        for p in (self._path(key), self.root / f"{key}.json"):
            p.unlink(missing_ok=True)

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if not p.name.endswith(".json"))
