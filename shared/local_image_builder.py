"""The ImageBuilder port locally: build context, smoke test with the edge server's own code, record.

There is no Docker engine here, so "building" means what ACR Tasks would be handed plus the part of
the Dockerfile that proves the image works: the scoring server loads the baked-in model and scores
the evaluation rows, and its loss must equal the loss recorded in the registry.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from shared import codec
from shared.image_context import NO_EVALUATION_ROWS, context_for_version, image_name
from shared.ports import NotFound, Storage
from shared.spec import ModelSpec


def build_id_for(source_id: str, version: int) -> str:
    return f"{source_id}/{version:06d}"


class LocalImageBuilder:
    def __init__(self, storage: Storage, registry, spec: ModelSpec, images_container: str, timeout_seconds: float = 300):
        self.storage = storage
        self.registry = registry
        self.spec = spec
        self.container = images_container
        self.timeout = timeout_seconds

    def start_build(self, source_id: str, version: int, eval_uri: str | None) -> str:
        build_id = build_id_for(source_id, version)
        started = datetime.now(timezone.utc).isoformat()
        _, context, digest, has_rows = context_for_version(self.storage, self.registry, self.spec, source_id, version, eval_uri)
        context_name = f"{build_id}/context.tar.gz"
        self.storage.write(self.container, context_name, context)
        smoke = self._smoke_test(context, has_rows)
        result = {
            "build_id": build_id,
            "state": "succeeded" if smoke["ok"] else "failed",
            "image": image_name(source_id, version),
            "digest": digest,
            "context_digest": digest,  # without a Docker engine, the image is named by its context's digest
            "context_uri": f"{self.container}/{context_name}",
            "smoke_test": smoke,
            "started_at": started,
            "ended_at": datetime.now(timezone.utc).isoformat(),
            "builder": "local",
        }
        if not smoke["ok"]:
            result["error"] = f"smoke test failed: {smoke.get('output', '')[-500:]}"
        self.storage.write(self.container, f"{build_id}/image.json", codec.to_bytes(result))
        return build_id

    def _smoke_test(self, context: bytes, has_rows: bool) -> dict:
        if not has_rows:
            return {"ok": False, "output": NO_EVALUATION_ROWS}
        with tempfile.TemporaryDirectory(prefix="multiline-image-") as folder:
            with tarfile.open(fileobj=io.BytesIO(context), mode="r:gz") as archive:
                archive.extractall(folder, filter="data")
            dockerfile = (Path(folder) / "Dockerfile").read_text()
            expected = dockerfile.split('--expect-loss "', 1)[1].split('"', 1)[0]
            try:
                completed = subprocess.run(
                    [sys.executable, "score_server.py", "--self-test", "model/evaluation.parquet", "--expect-loss", expected],
                    cwd=folder,
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                )
            except subprocess.TimeoutExpired:
                return {"ok": False, "output": f"smoke test did not finish in {self.timeout} s"}
        output = (completed.stdout + completed.stderr).strip()
        report = {"ok": completed.returncode == 0, "output": output[-2000:]}
        try:
            report.update(codec.loads(completed.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            pass
        return report

    def status(self, build_id: str) -> dict:
        try:
            return codec.loads(self.storage.read(self.container, f"{build_id}/image.json")[0])
        except NotFound:
            return {"build_id": build_id, "state": "failed", "error": f"build {build_id} is unknown"}

    def image_for(self, source_id: str, version: int) -> dict | None:
        try:
            record = codec.loads(self.storage.read(self.container, f"{build_id_for(source_id, version)}/image.json")[0])
        except NotFound:
            return None
        return record if record.get("state") == "succeeded" else None
