"""The ModelRegistry port on Azure ML model versions: one model name per source, metadata as tags.

The model files (the fitted pipeline and the training data's reference profile) live in the artifacts
container; each Azure ML model version points at its folder through the artifacts datastore. The
champion is the version tagged `champion=true`; moving it tags the new version first and then clears
the old one, so a reader never sees no champion, and the one-orchestration-per-source rule keeps two
promotions for one source from racing. The compare-and-swap token is `v<version>@<since>`.
"""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timezone

import joblib
from azure.core.exceptions import ResourceNotFoundError

from shared import codec
from shared.blob_registry import ChampionConflict, verified
from shared.ports import NotFound, PreconditionFailed, Storage

CHAMPION = "champion"
CHAMPION_SINCE = "champion_since"
CHAMPION_REASON = "champion_reason"
JSON_TAGS = "multiline_json"  # names of the tags whose values are JSON (tag values are strings)


def encode_tags(record: dict) -> dict[str, str]:
    tags, json_keys = {}, []
    for key, value in record.items():
        if value is None:
            continue
        if isinstance(value, str):
            tags[key] = value
        else:
            tags[key] = codec.dumps(value)
            json_keys.append(key)
    tags[JSON_TAGS] = ",".join(sorted(json_keys))
    return tags


def decode_tags(tags: dict) -> dict:
    tags = dict(tags or {})
    json_keys = {key for key in tags.pop(JSON_TAGS, "").split(",") if key}
    return {key: codec.loads(value) if key in json_keys else value for key, value in tags.items()}


def _since(model) -> str:
    return (model.tags or {}).get(CHAMPION_SINCE, "")


class AzureMLModelRegistry:
    def __init__(self, ml_client, storage: Storage, artifacts_container: str, datastore: str, model_prefix: str = "multiline-"):
        self.ml_client = ml_client
        self.storage = storage
        self.container = artifacts_container
        self.datastore = datastore
        self.prefix = model_prefix

    def model_name(self, source_id: str) -> str:
        return f"{self.prefix}{source_id}"

    def _folder(self, source_id: str, version: int) -> str:
        return f"{source_id}/models/{version:06d}"

    def _models(self, source_id: str) -> list:
        try:
            return list(self.ml_client.models.list(name=self.model_name(source_id)))
        except ResourceNotFoundError:
            return []

    def _model(self, source_id: str, version: int):
        try:
            return self.ml_client.models.get(name=self.model_name(source_id), version=str(version))
        except ResourceNotFoundError:
            raise NotFound(f"model {self.model_name(source_id)} version {version}") from None

    def register(self, source_id: str, model_bytes: bytes, tags: dict, profile: dict | None = None) -> int:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        version = max((int(model.version) for model in self._models(source_id)), default=0) + 1
        folder = self._folder(source_id, version)
        self.storage.write(self.container, f"{folder}/model.joblib", model_bytes)
        self.storage.write(self.container, f"{folder}/profile.json", codec.to_bytes(profile or {}))
        record = {
            **tags,
            "source_id": source_id,
            "version": version,
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "model_blob": f"{self.container}/{folder}/model.joblib",
            "registered_at": datetime.now(timezone.utc).isoformat(),
        }
        self.ml_client.models.create_or_update(
            Model(
                name=self.model_name(source_id),
                version=str(version),
                path=f"azureml://datastores/{self.datastore}/paths/{folder}/",
                type=AssetTypes.CUSTOM_MODEL,
                description=f"Multiline model of source {source_id}",
                tags=encode_tags(record),
            )
        )
        return version

    def _record(self, model) -> dict:
        record = decode_tags(model.tags)
        for key in (CHAMPION, CHAMPION_SINCE, CHAMPION_REASON):
            record.pop(key, None)
        return record

    def get(self, source_id: str, version: int) -> dict:
        return self._record(self._model(source_id, version))

    def profile(self, source_id: str, version: int) -> dict | None:
        try:
            data, _ = self.storage.read(self.container, f"{self._folder(source_id, version)}/profile.json")
        except NotFound:
            return None
        return codec.loads(data) or None

    def model_bytes(self, source_id: str, version: int) -> bytes:
        record = self.get(source_id, version)
        container, _, name = record["model_blob"].partition("/")
        data, _ = self.storage.read(container, name)
        return verified(data, record, source_id, version)

    def load_model(self, source_id: str, version: int):
        return joblib.load(io.BytesIO(self.model_bytes(source_id, version)))

    def versions(self, source_id: str) -> list[dict]:
        return sorted((self._record(model) for model in self._models(source_id)), key=lambda record: record["version"])

    def _holders(self, source_id: str) -> list:
        holders = [model for model in self._models(source_id) if (model.tags or {}).get(CHAMPION) == "true"]
        return sorted(holders, key=_since, reverse=True)

    def champion(self, source_id: str) -> tuple[int | None, str | None]:
        holders = self._holders(source_id)
        if not holders:
            return None, None
        return int(holders[0].version), f"v{holders[0].version}@{_since(holders[0])}"

    def champion_record(self, source_id: str) -> dict | None:
        holders = self._holders(source_id)
        if not holders:
            return None
        tags = holders[0].tags or {}
        return {
            "source_id": source_id,
            "version": int(holders[0].version),
            "reason": tags.get(CHAMPION_REASON),
            "since": _since(holders[0]),
        }

    def _ledger_name(self, source_id: str) -> str:
        return f"{source_id}/champion-ledger.json"

    def ledger(self, source_id: str) -> list[dict]:
        """Who was champion from when to when, and why (a document next to the model files)."""
        try:
            return codec.loads(self.storage.read(self.container, self._ledger_name(source_id))[0])
        except NotFound:
            return []

    def _append_ledger(self, source_id: str, entry: dict) -> None:
        history = self.ledger(source_id)
        if history and history[-1].get("to") is None:
            history[-1]["to"] = entry["from"]
        self.storage.write(self.container, self._ledger_name(source_id), codec.to_bytes([*history, entry]))

    def record_image(self, source_id: str, version: int, image: dict, attempts: int = 5) -> bool:
        """Note the edge image built from `version` in the ledger entry of its current reign (if it still reigns)."""
        for _ in range(attempts):
            try:
                data, etag = self.storage.read(self.container, self._ledger_name(source_id))
            except NotFound:
                return False
            history = codec.loads(data)
            if not history or history[-1].get("version") != version or history[-1].get("to") is not None:
                return False
            history[-1]["image"] = {key: image.get(key) for key in ("image", "digest", "build_id")}
            try:
                self.storage.write(self.container, self._ledger_name(source_id), codec.to_bytes(history), if_match=etag)
                return True
            except PreconditionFailed:
                continue
        return False

    def set_champion(self, source_id: str, version: int, expected_etag: str | None, reason: str, kind: str = "promote") -> str:
        """Move the champion tag only if the champion is still what the caller read (None: there is none)."""
        target = self._model(source_id, version)
        holders = self._holders(source_id)
        current = f"v{holders[0].version}@{_since(holders[0])}" if holders else None
        if current != expected_etag:
            raise ChampionConflict(f"champion of {source_id} changed while deciding (now {current}); nothing was moved")
        since = datetime.now(timezone.utc).isoformat()
        target.tags = {**(target.tags or {}), CHAMPION: "true", CHAMPION_SINCE: since, CHAMPION_REASON: reason[:250]}
        self.ml_client.models.create_or_update(target)
        for holder in holders:
            if str(holder.version) == str(version):
                continue
            holder.tags = {
                key: value for key, value in (holder.tags or {}).items() if key not in (CHAMPION, CHAMPION_SINCE, CHAMPION_REASON)
            }
            self.ml_client.models.create_or_update(holder)
        self._append_ledger(
            source_id, {"version": version, "from": since, "to": None, "kind": kind, "reason": reason, "image": None}
        )
        return f"v{version}@{since}"

    def sources(self) -> list[str]:
        names = (model.name for model in self.ml_client.models.list())
        return sorted(name[len(self.prefix) :] for name in names if name.startswith(self.prefix))
