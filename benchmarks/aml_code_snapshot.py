"""What a training submit spends on the Azure ML code snapshot: the deployed folder vs the staged one.

On Flex Consumption the deployed folder holds the remote build's `.python_packages/`; here `.venv/` plays
that part (same shape: a site-packages tree of tens of thousands of files that `.amlignore` drops).
azure-ai-ml computes the code's content hash (and, separately, its size) by walking the folder it is given
and testing every file against the ignore patterns. The baseline hashes the project folder itself, as the
backend did before; the product stages what `.amlignore` keeps into a folder of its own once per process
(`shared.azure_training.stage_code_snapshot`, pruning ignored folders) and hashes that. Both hashes must be
equal, or the staged snapshot would not be the code Azure ML would have uploaded.

Prints the file counts, median seconds of --repeats runs, and last `speedup_vs_project_folder=<ratio>`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.ai.ml._utils._asset_utils import get_content_hash, get_ignore_file  # noqa: E402

from shared.azure_training import stage_code_snapshot  # noqa: E402


def timed(function, repeats: int):
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    files_in_folder = sum(len(files) for _, _, files in os.walk(ROOT))
    baseline, folder_hash = timed(lambda: get_content_hash(ROOT, get_ignore_file(ROOT)), args.repeats)

    def staged_submit():
        with tempfile.TemporaryDirectory(prefix="multiline-bench-") as scratch:
            staged = stage_code_snapshot(ROOT, Path(scratch) / "code")
            return get_content_hash(staged, get_ignore_file(staged)), sum(len(f) for _, _, f in os.walk(staged))

    staged_seconds, (staged_hash, staged_files) = timed(staged_submit, args.repeats)
    if staged_hash != folder_hash:
        print(f"FAIL: staged snapshot hash {staged_hash} != project folder hash {folder_hash}")
        return 1
    print(f"files under the project folder: {files_in_folder}; kept by .amlignore: {staged_files}")
    print(f"content hash of the project folder (baseline): {baseline:.3f} s")
    print(f"stage once + content hash of the staged folder: {staged_seconds:.3f} s (equal hash {staged_hash[:12]})")
    print(f"speedup_vs_project_folder={baseline / staged_seconds:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
