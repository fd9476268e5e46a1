"""The one JSON codec for payloads, records and blobs."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd


def _default(value: Any):
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def clean(value: Any) -> Any:
    """NaN and infinities become null so every document is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(item) for item in value]
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(clean(value), default=_default, indent=indent, sort_keys=False)


def to_bytes(value: Any) -> bytes:
    return dumps(value, indent=1).encode()


def loads(data: bytes | str) -> Any:
    return json.loads(data)
