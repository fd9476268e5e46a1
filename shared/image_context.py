"""The edge image's build context, the same for ACR Tasks and the local builder: a reproducible tar.gz."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from importlib.metadata import version as package_version

from shared.settings import PROJECT_ROOT
from shared.spec import ModelSpec

EDGE_DIR = PROJECT_ROOT / "edge"
EDGE_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "joblib", "pyarrow")


# A repository path component as the OCI distribution spec allows it: lower-case alphanumerics joined by
# single separators ('.', '_', '__' or a run of '-'), never starting or ending with one.
_REPOSITORY_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")


def image_repository(source_id: str) -> str:
    """`edge-<source id>` when the id is a valid repository name as it is; otherwise the id in lower case
    with its separators tidied, plus "." and a short hash of the id itself. Source ids are case-sensitive (blob
    folders are) but repository names are lower case, so `Dongsi` and `dongsi`, two sources, must not share
    `edge-dongsi`; nor may ids the registry would refuse (`abc-`, `a___b`, `a-_b`, all allowed)."""
    name = f"edge-{source_id}"
    if _REPOSITORY_COMPONENT.fullmatch(name):
        return name
    # Joined by ".", which no source id contains: a hashed name never equals a plain one (`edge-dongsi-1abb46e2`
    # is what the source `dongsi-1abb46e2` gets).
    tidy = "-".join(re.findall(r"[a-z0-9]+", source_id.lower()))
    return f"edge-{tidy}.{hashlib.sha256(source_id.encode()).hexdigest()[:8]}"


def image_name(source_id: str, version: int) -> str:
    return f"{image_repository(source_id)}:{version}"


def edge_requirements() -> str:
    """Pin the edge image to the library versions that trained the model, so it unpickles identically."""
    return "".join(f"{name}=={package_version(name)}\n" for name in EDGE_PACKAGES)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def model_card(source_id: str, version: int, record: dict, spec: ModelSpec) -> dict:
    """What the edge scoring server needs to know about its model: inputs, derived features, digest."""
    return {
        "source_id": source_id,
        "version": version,
        "sha256": record["sha256"],
        "target": spec.target,
        "timestamp": spec.timestamp_spec,
        "raw_features": spec.raw_features,
        "numeric_features": spec.numeric_features,
        "categorical_features": spec.categorical_features,
        "derived": spec.derived,
        "features": spec.features,
        "constant_features": record.get("constant_features") or {},
        "candidate": record.get("candidate", "per_source"),
        "loss": spec.loss,
        "metrics": record.get("metrics", {}),
        "train_end": record.get("train_end"),
    }


NO_EVALUATION_ROWS = "no evaluation rows to smoke-test the image with"


def build_context(
    source_id: str, version: int, model_bytes: bytes, record: dict, spec: ModelSpec, evaluation: bytes | None
) -> tuple[bytes, str]:
    """The tar.gz bytes and their sha256 digest (`sha256:<hex>`); equal inputs give equal bytes."""
    card = model_card(source_id, version, record, spec)
    expected_loss = record.get("metrics", {}).get(spec.loss, "")
    dockerfile = (EDGE_DIR / "Dockerfile.template").read_text()
    dockerfile = dockerfile.replace("{source_id}", source_id).replace("{expected_loss}", str(expected_loss))
    files = {
        "Dockerfile": dockerfile.encode(),
        "requirements.txt": edge_requirements().encode(),
        "score_server.py": (EDGE_DIR / "score_server.py").read_bytes(),
        "features.py": (EDGE_DIR / "features.py").read_bytes(),
        "model/model.joblib": model_bytes,
        "model/model.json": json.dumps(card, indent=1, sort_keys=True).encode(),
    }
    if evaluation is not None:
        files["model/evaluation.parquet"] = evaluation
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            _add(archive, name, files[name])
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as zipped:
        zipped.write(raw.getvalue())
    data = packed.getvalue()
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def context_for_version(storage, registry, default_spec: ModelSpec, source_id: str, version: int, eval_uri: str | None):
    """The build context of a registered version, with its own spec (a fleet model has an extra input) and its
    evaluation rows for the smoke test: (record, context bytes, digest, has evaluation rows)."""
    from shared.spec import spec_of_model

    record = registry.get(source_id, version)
    evaluation = None
    eval_uri = eval_uri or record.get("eval_uri")
    if eval_uri:
        container, _, name = eval_uri.partition("/")
        evaluation = storage.read(container, name)[0]
    context, digest = build_context(
        source_id, version, registry.model_bytes(source_id, version), record, spec_of_model(record, default_spec), evaluation
    )
    return record, context, digest, evaluation is not None
