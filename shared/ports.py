"""Ports: the contracts the activities use. Each has a local and an Azure adapter behind the same tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

TRAINING_STATES = ("queued", "running", "succeeded", "failed", "canceled")
TERMINAL_TRAINING_STATES = ("succeeded", "failed", "canceled")
BUILD_STATES = ("queued", "running", "succeeded", "failed", "canceled")


class PreconditionFailed(Exception):
    """An ETag condition did not hold: someone else changed the blob first."""


class NotFound(Exception):
    """The blob, model version or job does not exist."""


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    etag: str
    last_modified: datetime
    metadata: dict
    created: datetime | None = None  # first upload of this name; metadata writes do not move it


class Storage(Protocol):
    def read(self, container: str, name: str) -> tuple[bytes, str]: ...

    def write(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        metadata: dict | None = None,
    ) -> str: ...

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]: ...

    def info(self, container: str, name: str) -> BlobInfo: ...

    def set_metadata(self, container: str, name: str, metadata: dict, drop: Iterable[str] = ()) -> None:
        """Set these metadata keys and remove the `drop` keys; the blob's other metadata and content stay."""
        ...

    def list_prefixes(self, container: str) -> list[str]: ...


class TrainingBackend(Protocol):
    def submit(self, job: dict) -> str: ...

    def status(self, job_id: str) -> dict: ...

    def cancel(self, job_id: str) -> None: ...


class ModelRegistry(Protocol):
    def register(self, source_id: str, model_bytes: bytes, tags: dict) -> int: ...

    def get(self, source_id: str, version: int) -> dict: ...

    def load_model(self, source_id: str, version: int): ...

    def versions(self, source_id: str) -> list[dict]: ...

    def champion(self, source_id: str) -> tuple[int | None, str | None]: ...

    def set_champion(self, source_id: str, version: int, expected_etag: str | None, reason: str) -> str: ...

    def sources(self) -> list[str]: ...


class ImageBuilder(Protocol):
    def start_build(self, source_id: str, version: int, eval_uri: str | None) -> str: ...

    def status(self, build_id: str) -> dict: ...

    def image_for(self, source_id: str, version: int) -> dict | None: ...
