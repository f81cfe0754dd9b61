"""Stable hashes of plain data: cache keys and spec identities that do not change between processes."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any) -> str:
    """SHA-256 of a JSON-able object with sorted keys (non-JSON values by their ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
