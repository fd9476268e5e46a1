"""The ModelRegistry port stored in blobs: numbered versions per source and a champion pointer moved by CAS.

Layout in the models container:
  <source>/versions/<000001>/model.joblib   the fitted pipeline (its sha256 is checked before loading)
  <source>/versions/<000001>/version.json   tags: data range, rows, metrics, drift report, job, parent
  <source>/versions/<000001>/profile.json   the reference profile of the training data (drift)
  <source>/champion.json                    {"version": n, ...}, only ever written with an ETag condition
"""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timezone

import joblib

from shared import codec
from shared.ports import NotFound, PreconditionFailed, Storage


class ChampionConflict(Exception):
    """The champion pointer moved since it was read: the caller must re-read and decide again."""


class ModelIntegrityError(Exception):
    """A stored model's bytes do not match the digest recorded when it was registered."""


def verified(data: bytes, record: dict, source_id: str, version: int) -> bytes:
    """The model's bytes, only if they are the ones registered (checked before anything unpickles them)."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["sha256"]:
        raise ModelIntegrityError(
            f"model {source_id} v{version}: stored bytes have sha256 {digest}, registered {record['sha256']}"
        )
    return data


def _version_prefix(source_id: str, version: int) -> str:
    return f"{source_id}/versions/{version:06d}"


class BlobModelRegistry:
    def __init__(self, storage: Storage, container: str = "models"):
        self.storage = storage
        self.container = container

    def _latest_version(self, source_id: str) -> int:
        latest = 0
        for blob in self.storage.list(self.container, f"{source_id}/versions/"):
            if blob.name.endswith("/version.json"):
                latest = max(latest, int(blob.name.split("/")[2]))
        return latest

    def register(self, source_id: str, model_bytes: bytes, tags: dict, profile: dict | None = None) -> int:
        version = self._latest_version(source_id) + 1
        for _ in range(50):
            prefix = _version_prefix(source_id, version)
            try:
                self.storage.write(self.container, f"{prefix}/model.joblib", model_bytes, if_none_match="*")
                break
            except PreconditionFailed:
                version += 1  # another registration took this number first
        else:
            raise ChampionConflict(f"could not allocate a version number for {source_id}")
        record = {
            **tags,
            "source_id": source_id,
            "version": version,
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "registered_at": datetime.now(timezone.utc).isoformat(),
        }
        self.storage.write(self.container, f"{prefix}/profile.json", codec.to_bytes(profile or {}))
        self.storage.write(self.container, f"{prefix}/version.json", codec.to_bytes(record))
        return version

    def get(self, source_id: str, version: int) -> dict:
        data, _ = self.storage.read(self.container, f"{_version_prefix(source_id, version)}/version.json")
        return codec.loads(data)

    def profile(self, source_id: str, version: int) -> dict | None:
        try:
            data, _ = self.storage.read(self.container, f"{_version_prefix(source_id, version)}/profile.json")
        except NotFound:
            return None
        return codec.loads(data) or None

    def model_bytes(self, source_id: str, version: int) -> bytes:
        record = self.get(source_id, version)
        data, _ = self.storage.read(self.container, f"{_version_prefix(source_id, version)}/model.joblib")
        return verified(data, record, source_id, version)

    def load_model(self, source_id: str, version: int):
        return joblib.load(io.BytesIO(self.model_bytes(source_id, version)))

    def versions(self, source_id: str) -> list[dict]:
        records = []
        for blob in self.storage.list(self.container, f"{source_id}/versions/"):
            if blob.name.endswith("/version.json"):
                records.append(codec.loads(self.storage.read(self.container, blob.name)[0]))
        return sorted(records, key=lambda record: record["version"])

    def champion(self, source_id: str) -> tuple[int | None, str | None]:
        """The champion version (None if none yet) and the pointer's ETag for a later compare-and-swap."""
        try:
            data, etag = self.storage.read(self.container, f"{source_id}/champion.json")
        except NotFound:
            return None, None
        return codec.loads(data)["version"], etag

    def champion_record(self, source_id: str) -> dict | None:
        try:
            return codec.loads(self.storage.read(self.container, f"{source_id}/champion.json")[0])
        except NotFound:
            return None

    def set_champion(self, source_id: str, version: int, expected_etag: str | None, reason: str, kind: str = "promote") -> str:
        """Move the pointer only if it is still what the caller read (None: only if there is none yet).

        The pointer document carries the source's ledger (who was champion from when to when, and why), so
        the move and its record are one conditional write: there is never a moment with two champions.
        """
        self.get(source_id, version)  # the version must exist
        previous = self.champion_record(source_id)
        now = datetime.now(timezone.utc).isoformat()
        history = [dict(entry) for entry in (previous or {}).get("history", [])]
        if history and history[-1].get("to") is None:
            history[-1]["to"] = now
        history.append({"version": version, "from": now, "to": None, "kind": kind, "reason": reason, "image": None})
        document = {
            "source_id": source_id,
            "version": version,
            "previous_version": previous["version"] if previous else None,
            "reason": reason,
            "since": now,
            "history": history,
        }
        try:
            if expected_etag is None:
                return self.storage.write(
                    self.container, f"{source_id}/champion.json", codec.to_bytes(document), if_none_match="*"
                )
            return self.storage.write(
                self.container, f"{source_id}/champion.json", codec.to_bytes(document), if_match=expected_etag
            )
        except PreconditionFailed as exc:
            raise ChampionConflict(f"champion of {source_id} changed while deciding; nothing was moved") from exc

    def record_image(self, source_id: str, version: int, image: dict, attempts: int = 5) -> bool:
        """Note the edge image built from `version` in the ledger entry of its current reign (if it still reigns)."""
        for _ in range(attempts):
            try:
                data, etag = self.storage.read(self.container, f"{source_id}/champion.json")
            except NotFound:
                return False
            document = codec.loads(data)
            current = (document.get("history") or [None])[-1]
            if document["version"] != version or current is None or current.get("version") != version:
                return False
            current["image"] = {key: image.get(key) for key in ("image", "digest", "build_id")}
            try:
                self.storage.write(self.container, f"{source_id}/champion.json", codec.to_bytes(document), if_match=etag)
                return True
            except PreconditionFailed:
                continue
        return False

    def ledger(self, source_id: str) -> list[dict]:
        return (self.champion_record(source_id) or {}).get("history", [])

    def sources(self) -> list[str]:
        return self.storage.list_prefixes(self.container)
