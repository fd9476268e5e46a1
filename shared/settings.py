"""The one settings loader: every setting the code reads comes from an environment variable.

In Azure these are app settings; locally `multiline` fills them from `local.settings.json`
(Values) or its own defaults. Nothing else in the code reads `os.environ`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = PROJECT_ROOT / "specs" / "air-quality.json"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be a number, got {raw!r}") from exc


def _str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw in (None, "") else raw


def _project_path(raw: str) -> Path:
    """Relative paths in settings are relative to the project, as in local.settings.json."""
    path = Path(raw)
    return path if path.is_absolute() else PROJECT_ROOT / path


@dataclass(frozen=True)
class Containers:
    raw: str = "raw"
    models: str = "models"
    runs: str = "runs"
    jobs: str = "jobs"
    artifacts: str = "artifacts"
    images: str = "images"

    def all(self) -> list[str]:
        return [self.raw, self.models, self.runs, self.jobs, self.artifacts, self.images]


@dataclass(frozen=True)
class Settings:
    mode: str
    storage_connection_string: str
    storage_account_url: str
    spec_path: Path
    containers: Containers
    debounce_seconds: float
    poll_seconds: float
    training_deadline_seconds: float
    build_deadline_seconds: float
    training_concurrency: int
    promotion_margin: float
    drift_psi_threshold: float
    drift_share: float
    source_id_pattern: str
    source_id_max_length: int
    blob_date_slack_days: int
    state_dir: Path
    extra: dict = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.mode == "local"


def load_settings() -> Settings:
    mode = _str("MULTILINE_MODE", "local")
    if mode not in ("local", "azure"):
        raise ValueError(f"setting MULTILINE_MODE must be 'local' or 'azure', got {mode!r}")
    return Settings(
        mode=mode,
        storage_connection_string=_str("MULTILINE_STORAGE_CONNECTION_STRING", ""),
        storage_account_url=_str("MULTILINE_STORAGE_ACCOUNT_URL", ""),
        spec_path=_project_path(_str("MULTILINE_SPEC", str(DEFAULT_SPEC))),
        containers=Containers(
            raw=_str("MULTILINE_RAW_CONTAINER", "raw"),
        ),
        debounce_seconds=_float("MULTILINE_DEBOUNCE_SECONDS", 30.0),
        poll_seconds=_float("MULTILINE_POLL_SECONDS", 15.0),
        training_deadline_seconds=_float("MULTILINE_TRAINING_DEADLINE_SECONDS", 4 * 3600.0),
        build_deadline_seconds=_float("MULTILINE_BUILD_DEADLINE_SECONDS", 3600.0),
        training_concurrency=_int("MULTILINE_TRAINING_CONCURRENCY", os.cpu_count() or 1),
        promotion_margin=_float("MULTILINE_PROMOTION_MARGIN", 0.01),
        drift_psi_threshold=_float("MULTILINE_DRIFT_PSI_THRESHOLD", 0.1),
        drift_share=_float("MULTILINE_DRIFT_SHARE", 0.5),
        source_id_pattern=_str("MULTILINE_SOURCE_ID_PATTERN", r"[A-Za-z0-9][A-Za-z0-9_-]*"),
        source_id_max_length=_int("MULTILINE_SOURCE_ID_MAX_LENGTH", 63),
        blob_date_slack_days=_int("MULTILINE_BLOB_DATE_SLACK_DAYS", 31),
        state_dir=_project_path(_str("MULTILINE_STATE_DIR", ".multiline")),
    )
