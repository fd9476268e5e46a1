"""What the deployments carry, checked against what the code imports.

- The Function App package (`azd deploy`, `.funcignore`): the Functions entry point and everything it imports,
  the spec file the app settings name, the edge image's build context, and the training code, which the
  Function App uploads from its own folder as the Azure ML steps' code.
- The Azure ML code snapshot (`.amlignore`, read by azure-ai-ml when it uploads that folder): every module
  `python -m training.steps` imports.
- The Azure ML environment (`infra/training-conda.yml`): a package for every third-party module the steps
  import (directly, through `shared/`, and the spec's estimator), on the Function App's Python version and with
  the same version ranges as `requirements.txt`, so models unpickle on both sides.

The ignore files are matched with azure-ai-ml's own matcher (gitignore syntax, which azd also uses for
`.funcignore`), so the `.amlignore` check is exactly what the SDK uploads.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from azure.ai.ml._utils._asset_utils import IgnoreFile, get_ignore_file
from packaging.requirements import Requirement

from shared.settings import PROJECT_ROOT

ROOT = PROJECT_ROOT
BICEP = (ROOT / "infra" / "resources.bicep").read_text()

# Project modules the training closure reaches only through lazy imports in functions the steps never call
# (`shared.adapters` builds every port; the steps use its storage and registry builders only).
NOT_RUN_BY_THE_STEPS = {
    "shared.azure_training": "submits pipeline jobs: runs in the Function App",
    "shared.acr_builder": "builds edge images: runs in the Function App",
    "shared.local_training": "the local training backend",
    "shared.local_image_builder": "the local image builder",
}
# Third-party modules imported inside functions of modules the steps do load, on paths the steps never take.
THIRD_PARTY_NOT_RUN_BY_THE_STEPS = {
    "azure.mgmt.containerregistry": "shared.azure_clients.acr_client, for the image builder only",
}

# Heavy or private paths that must never be uploaded, as a file below each (a folder rule drops them all).
NEVER_UPLOADED = [
    ".venv/lib/python3.11/site-packages/pandas/__init__.py",
    ".python_packages/lib/site-packages/pandas/__init__.py",
    "node_modules/azurite/package.json",
    ".multiline/logs/jobs/x.log",
    "data/raw/part.csv",
    "benchmarks/results/run.json",
    "tests/azure/test_function_app.py",
    ".git/HEAD",
    ".hypothesis/examples/x",
    "__pycache__/function_app.cpython-311.pyc",
    "shared/__pycache__/settings.cpython-311.pyc",
    "local.settings.json",
    # the local stack's tooling: a root package.json could also make the remote build detect Node.js
    "package.json",
    "package-lock.json",
    "Makefile",
    "pyproject.toml",
    "README.md",
    "azure.yaml",
]


def _project_file(module: str) -> Path | None:
    parts = module.split(".")
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    """Every absolute import in the file, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_closure(entry: str, prune: frozenset[str] = frozenset()) -> tuple[set[str], set[str]]:
    """(project modules, third-party module names) reachable from `entry`; `prune` modules are not followed."""
    project: set[str] = set()
    third_party: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in project or module in prune:
            continue
        path = _project_file(module)
        if path is None:
            continue
        project.add(module)
        for name in _imported_names(path):
            if _project_file(name):
                todo.append(name)
            elif _project_file(name.split(".")[0]) or (ROOT / name.split(".")[0]).is_dir():
                continue  # a name imported from a project module (`from edge.features import derive`)
            elif name.split(".")[0] not in sys.stdlib_module_names:
                third_party.add(name)
    return project, third_party


def _files(modules: set[str]) -> set[str]:
    return {_project_file(module).relative_to(ROOT).as_posix() for module in modules}


@lru_cache(maxsize=1)
def training_closure() -> tuple[set[str], set[str]]:
    return import_closure("training.steps", frozenset(NOT_RUN_BY_THE_STEPS))


def _excluded(ignore: IgnoreFile, relative: str) -> bool:
    return ignore.is_file_excluded((ROOT / relative).as_posix())


def _app_setting(name: str) -> str:
    match = re.search(rf"\{{ name: '{name}', value: '([^']*)' \}}", BICEP)
    assert match, f"infra/resources.bicep sets no literal value for {name}"
    return match.group(1)


# ---- the Function App package ------------------------------------------------------------------------------

FUNCIGNORE = IgnoreFile(ROOT / ".funcignore")


def function_app_runtime_files() -> set[str]:
    app_modules, _ = import_closure("function_app")
    training_modules, _ = training_closure()
    return (
        _files(app_modules | training_modules)
        | {"host.json", "requirements.txt", ".amlignore", _app_setting("MULTILINE_SPEC")}
        | {path.relative_to(ROOT).as_posix() for path in (ROOT / "edge").iterdir() if path.is_file()}
    )


def test_the_function_app_package_keeps_what_runs():
    assert FUNCIGNORE.exists()
    dropped = sorted(path for path in function_app_runtime_files() if _excluded(FUNCIGNORE, path))
    assert dropped == [], f".funcignore drops files the deployed app needs: {dropped}"


def test_the_function_app_package_keeps_every_runtime_folder():
    for folder in ("activities", "orchestrations", "shared", "training", "edge", "specs"):
        files = [path for path in (ROOT / folder).iterdir() if path.is_file() and path.suffix in (".py", ".json", ".template")]
        assert files, folder
        assert not [path for path in files if _excluded(FUNCIGNORE, path.relative_to(ROOT).as_posix())], folder


@pytest.mark.parametrize("path", NEVER_UPLOADED + ["infra/resources.bicep", "docs/AZURE.md", "local/cli.py"])
def test_the_function_app_package_drops_heavy_and_private_files(path):
    assert _excluded(FUNCIGNORE, path), f".funcignore lets {path} into the Function App package"


def test_the_spec_the_app_settings_name_is_in_the_package():
    spec = _app_setting("MULTILINE_SPEC")
    assert not Path(spec).is_absolute(), "relative paths resolve against the deployed folder (shared.settings)"
    assert (ROOT / spec).is_file()


def _kept_size(ignores: list[IgnoreFile]) -> int:
    total = 0
    for folder, subfolders, files in os.walk(ROOT):
        base = Path(folder)
        subfolders[:] = [
            name
            for name in subfolders
            if not any(_excluded(ignore, (base / name / "x").relative_to(ROOT).as_posix()) for ignore in ignores)
        ]
        for name in files:
            relative = (base / name).relative_to(ROOT).as_posix()
            if not any(_excluded(ignore, relative) for ignore in ignores):
                total += (base / name).stat().st_size
    return total


def test_the_uploads_are_source_sized():
    # Flex Consumption adds the packages by its remote build; what azd uploads is the source alone, and the
    # Azure ML snapshot (what survives both ignore files) must stay far below its 300 MB snapshot limit.
    assert _kept_size([FUNCIGNORE]) < 20 * 1024 * 1024
    assert _kept_size([FUNCIGNORE, get_ignore_file(ROOT)]) < 20 * 1024 * 1024


# ---- the Azure ML code snapshot ------------------------------------------------------------------------------


def test_azure_ml_reads_the_amlignore():
    ignore = get_ignore_file(ROOT)
    assert ignore.path == (ROOT / ".amlignore").resolve()


def test_the_code_snapshot_has_every_module_the_steps_import():
    modules, _ = training_closure()
    assert {"training.steps", "shared.azure_registry", "shared.blob_storage", "edge.features"} <= modules
    ignore = get_ignore_file(ROOT)
    dropped = sorted(path for path in _files(modules) if _excluded(ignore, path))
    assert dropped == [], f".amlignore drops modules `python -m training.steps` imports: {dropped}"


def test_the_staged_code_snapshot_is_what_azure_ml_would_upload_from_the_project(tmp_path):
    """The backend hands Azure ML a staged copy (no walk through .python_packages/ per submit): same files, same hash."""
    from azure.ai.ml._utils._asset_utils import get_content_hash, get_upload_files_from_folder

    from shared.azure_training import stage_code_snapshot

    staged = stage_code_snapshot(ROOT, tmp_path / "code")
    staged_files = {path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file()}
    uploaded = {relative for _, relative in get_upload_files_from_folder(ROOT, ignore_file=get_ignore_file(ROOT))}
    assert staged_files == uploaded
    modules, _ = training_closure()
    assert _files(modules) <= staged_files
    assert get_content_hash(staged, get_ignore_file(staged)) == get_content_hash(ROOT, get_ignore_file(ROOT))


def test_the_backend_submits_the_staged_snapshot_unless_a_code_asset_is_set(monkeypatch):
    from shared.azure_settings import load_azure_settings
    from shared.azure_training import AzureMLTrainingBackend
    from shared.settings import load_settings

    monkeypatch.setenv("MULTILINE_AML_CODE", "")
    backend = AzureMLTrainingBackend(None, None, load_settings(), load_azure_settings())
    code = Path(backend.code)
    assert code != ROOT and (code / "training" / "steps.py").is_file() and not (code / ".venv").exists()
    assert backend.code == str(code)  # staged once per process
    monkeypatch.setenv("MULTILINE_AML_CODE", "azureml:multiline-code:3")
    assert AzureMLTrainingBackend(None, None, load_settings(), load_azure_settings()).code == "azureml:multiline-code:3"


@pytest.mark.parametrize("path", NEVER_UPLOADED)
def test_the_code_snapshot_drops_heavy_and_private_files(path):
    assert _excluded(get_ignore_file(ROOT), path), f".amlignore lets {path} into the Azure ML code snapshot"


# ---- the Azure ML environment --------------------------------------------------------------------------------

CONDA = yaml.safe_load((ROOT / "infra" / "training-conda.yml").read_text())


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def conda_pip_requirements() -> dict[str, Requirement]:
    pip = next(item["pip"] for item in CONDA["dependencies"] if isinstance(item, dict) and "pip" in item)
    return {_normal(req.name): req for req in map(Requirement, pip)}


def app_requirements() -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    return {_normal(req.name): req for req in map(Requirement, filter(None, lines))}


def _dependency_closure(names: set[str]) -> set[str]:
    """The distributions pip installs for `names` (as installed here), without extras."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _normal(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in map(Requirement, requires):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


@lru_cache(maxsize=64)
def _files_by_owner(top_level: str) -> dict[str, str]:
    owners = {}
    for dist in metadata.packages_distributions().get(top_level, []):
        for file in metadata.files(dist) or []:
            owners[file.as_posix()] = _normal(dist)
    return owners


def distribution_of(name: str) -> str:
    """The distribution that installs module `name` (or, for `module.attribute`, the module's)."""
    owners = _files_by_owner(name.split(".")[0])
    while name:
        stem = name.replace(".", "/")
        for candidate in (f"{stem}/__init__.py", f"{stem}.py"):
            if candidate in owners:
                return owners[candidate]
        name = name.rpartition(".")[0]
    raise AssertionError("not installed here")


def third_party_modules_of_the_steps() -> set[str]:
    _, third_party = training_closure()
    skipped = tuple(THIRD_PARTY_NOT_RUN_BY_THE_STEPS)
    modules = {name for name in third_party if not any(name == skip or name.startswith(skip + ".") for skip in skipped)}
    # The estimator class of every spec is imported by name (shared.spec.build_estimator).
    for spec in (ROOT / "specs").glob("*.json"):
        modules.add(json.loads(spec.read_text())["estimator"]["class"].rpartition(".")[0])
    return modules


def test_the_training_environment_has_every_package_the_steps_import():
    available = _dependency_closure(set(conda_pip_requirements()))
    missing = {
        module: distribution_of(module)
        for module in sorted(third_party_modules_of_the_steps())
        if distribution_of(module) not in available
    }
    assert missing == {}, f"infra/training-conda.yml lacks the packages of {missing}"


def test_the_training_environment_lists_what_the_steps_import_directly():
    # Transitive availability is not enough for the libraries the model is made of or that reach Azure.
    listed = set(conda_pip_requirements())
    for package in (
        "azure-ai-ml",
        "azure-identity",
        "azure-storage-blob",
        "scikit-learn",
        "pandas",
        "pyarrow",
        "numpy",
        "joblib",
    ):
        assert package in listed, package


def test_the_training_environment_runs_the_function_apps_python():
    conda_python = next(item for item in CONDA["dependencies"] if isinstance(item, str) and item.startswith("python="))
    runtime = re.search(r"runtime: \{ name: 'python', version: '([0-9.]+)' \}", BICEP)
    assert runtime, "functionAppConfig.runtime not found in infra/resources.bicep"
    assert conda_python == f"python={runtime.group(1)}"


def test_the_training_environment_allows_the_same_versions_as_the_function_app():
    app = app_requirements()
    for name, req in conda_pip_requirements().items():
        if name in app:
            assert req.specifier == app[name].specifier, (
                f"{name}: conda {req.specifier} vs requirements.txt {app[name].specifier}"
            )


def test_the_model_libraries_are_pinned_to_one_version_everywhere():
    """Trained on Azure ML, unpickled by the Function App and the edge image: one exact version of each library."""
    from shared.image_context import EDGE_PACKAGES

    app, conda = app_requirements(), conda_pip_requirements()
    for name in EDGE_PACKAGES:
        pins = {str(req.specifier) for req in (app[name], conda[name])}
        assert len(pins) == 1 and next(iter(pins)).startswith("=="), f"{name}: {pins}"
        # The edge image pins what is installed where the app runs; here, that is this environment.
        assert next(iter(pins)) == f"=={metadata.version(name)}", f"{name} installed {metadata.version(name)}"
