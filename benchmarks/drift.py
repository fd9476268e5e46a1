"""Drift check: speed, memory and verdicts against Evidently 0.7.23's DataDriftPreset on the air-quality data.

Three cases from data/air-quality (10 numeric columns and `wd`, the 11 columns of the comparison):
  8,760 vs 720         one station: its first year, then the next 30 days
  100,000 vs 10,000    all stations in time order: the first 100,000 rows, then the next 10,000
  280,000 vs 280,000   all stations: the first two years vs the last two, each repeated up to 280,000 rows
The product's time is building the reference profile plus checking the new rows against it (median of
--repeats runs); peak memory of the check alone is taken with tracemalloc. Evidently (which needs pandas<3)
runs in its own environment: `make bench-drift` creates benchmarks/.venv-evidently and passes its Python as
--evidently-python; this script then runs itself there with --evidently-worker on the same files and cases.
Without it, or with Evidently importable here, the comparison runs in this interpreter or is skipped.

Last line: speedup_vs_evidently=<Evidently time / product time at 280,000 vs 280,000>.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "air-quality"
NUMERIC = ["PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM"]
CATEGORICAL = ["wd"]
COLUMNS = NUMERIC + CATEGORICAL
CASES = (("8,760 vs 720", 8_760, 720), ("100,000 vs 10,000", 100_000, 10_000), ("280,000 vs 280,000", 280_000, 280_000))


def load_stations() -> list[pd.DataFrame]:
    frames = []
    for path in sorted(DATA.glob("PRSA_Data_*.csv.gz")):
        frame = pd.read_csv(path, na_values=["NA"], keep_default_na=True)
        frame[CATEGORICAL] = frame[CATEGORICAL].astype(object)  # the same dtype under pandas 2 and 3
        frames.append(frame[["year", "month", "day", "hour", *COLUMNS]])
    return frames


def _repeat_to(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    copies = -(-rows // len(frame))
    return pd.concat([frame] * copies, ignore_index=True).iloc[:rows].reset_index(drop=True)


def build_cases(stations: list[pd.DataFrame]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    pooled = pd.concat(stations, ignore_index=True).sort_values(["year", "month", "day", "hour"], kind="stable")
    pooled = pooled.reset_index(drop=True)
    first_two_years = (pooled.year < 2015) | ((pooled.year == 2015) & (pooled.month < 3))
    cases = {}
    for name, reference_rows, current_rows in CASES:
        if reference_rows == 8_760:
            station = stations[0]
            reference, current = station.iloc[:reference_rows], station.iloc[reference_rows : reference_rows + current_rows]
        elif reference_rows == 100_000:
            reference, current = pooled.iloc[:reference_rows], pooled.iloc[reference_rows : reference_rows + current_rows]
        else:
            reference = _repeat_to(pooled.loc[first_two_years], reference_rows)
            current = _repeat_to(pooled.loc[~first_two_years], current_rows)
        cases[name] = (reference[COLUMNS].reset_index(drop=True), current[COLUMNS].reset_index(drop=True))
    return cases


# -------------------------------------------------------------------------------------------------- Evidently


def run_evidently(cases: dict, repeats: int) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)

    def once(reference: pd.DataFrame, current: pd.DataFrame):
        started = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        return time.perf_counter() - started, snapshot

    warm_reference, warm_current = next(iter(cases.values()))
    once(warm_reference.iloc[:2000], warm_current.iloc[:500])  # imports and one-time set-up, not counted
    results = {}
    for name, (reference, current) in cases.items():
        seconds = []
        for _ in range(repeats):
            elapsed, snapshot = once(reference, current)
            seconds.append(elapsed)
        columns = {}
        for metric in snapshot.dict()["metrics"]:
            config = metric.get("config", {})
            if not config.get("type", "").endswith("ValueDrift"):
                continue
            method, threshold, score = config["method"], config["threshold"], metric["value"]
            # Evidently: p-value methods drift below the threshold, distances at or above it
            drifted = score < threshold if "p_value" in method.lower() else score >= threshold
            columns[config["column"]] = {"method": method, "score": score, "drifted": bool(drifted)}
        results[name] = {"seconds": statistics.median(seconds), "columns": columns}
    return results


def evidently_results(args, cases: dict) -> dict | None:
    try:
        import evidently  # noqa: F401

        return run_evidently(cases, args.evidently_repeats)
    except ImportError:
        pass
    python = args.evidently_python
    if not python or not Path(python).exists():
        print(f"Evidently not importable here and no --evidently-python ({python}): comparison skipped")
        return None
    command = [python, __file__, "--evidently-worker", "--evidently-repeats", str(args.evidently_repeats)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        print(f"Evidently run failed ({python}):\n{done.stderr[-3000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------- product


def run_product(cases: dict, repeats: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from shared.drift import DriftThresholds, build_profile, check_drift
    from shared.spec import parse_spec

    raw = json.loads((ROOT / "specs" / "air-quality.json").read_text())
    spec = parse_spec({**raw, "numeric_features": NUMERIC, "categorical_features": CATEGORICAL})
    thresholds = DriftThresholds()
    results = {}
    for name, (reference, current) in cases.items():
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            profile = build_profile(reference, spec)
            built = time.perf_counter()
            report = check_drift(profile, current, spec, thresholds)
            timings.append((time.perf_counter() - started, built - started))
        tracemalloc.start()
        check_drift(profile, current, spec, thresholds)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        total, profile_seconds = sorted(timings)[len(timings) // 2]
        results[name] = {
            "seconds": total,
            "profile_seconds": profile_seconds,
            "peak_bytes": peak,
            "current_bytes": int(current.memory_usage(deep=True, index=False).sum()),
            "profile_bytes": len(json.dumps(profile)),
            "report": report,
        }
    return results


def _score(result: dict) -> str:
    if result.get("kind") == "numeric":
        return f"W {result.get('wasserstein')}"
    return f"JS {result.get('jensen_shannon')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evidently-python", default=str(ROOT / "benchmarks" / ".venv-evidently" / "bin" / "python"))
    parser.add_argument("--evidently-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help="product runs per case (the median is reported)")
    parser.add_argument("--evidently-repeats", type=int, default=1)
    args = parser.parse_args()
    cases = build_cases(load_stations())
    if args.evidently_worker:
        print(json.dumps(run_evidently(cases, args.evidently_repeats)))
        return

    product = run_product(cases, args.repeats)
    evidently = evidently_results(args, cases)
    speedup = None
    for name, _, _ in CASES:
        ours = product[name]
        report = ours["report"]
        print(f"\n== {name}: {ours['current_bytes'] / 1e6:.1f} MB of current data, profile {ours['profile_bytes']:,} bytes")
        print(
            f"product   {ours['seconds']:.3f} s (profile {ours['profile_seconds']:.3f} s + check "
            f"{ours['seconds'] - ours['profile_seconds']:.3f} s), peak memory of the check "
            f"{ours['peak_bytes'] / 1e6:.1f} MB = {ours['peak_bytes'] / ours['current_bytes']:.2f}x the current data; "
            f"{report['status']}, {len(report['drifted'])}/11 drifted"
        )
        if evidently is None:
            continue
        theirs = evidently[name]
        agree = sum(report["features"][column]["drifted"] == theirs["columns"][column]["drifted"] for column in COLUMNS)
        ratio = theirs["seconds"] / ours["seconds"]
        print(
            f"evidently {theirs['seconds']:.3f} s; ratio {ratio:.1f}x; "
            f"{sum(column['drifted'] for column in theirs['columns'].values())}/11 drifted; verdicts agree on {agree}/11"
        )
        for column in COLUMNS:
            mine, other = report["features"][column], theirs["columns"][column]
            mark = "" if mine["drifted"] == other["drifted"] else "   <- differs"
            print(
                f"  {column:5} product {'drift' if mine['drifted'] else 'ok   '} {_score(mine):12} psi {mine.get('psi')!s:7} | "
                f"evidently {'drift' if other['drifted'] else 'ok   '} {other['score']:.4f} ({other['method']}){mark}"
            )
        speedup = ratio
    print(f"speedup_vs_evidently={speedup:.1f}" if speedup is not None else "speedup_vs_evidently=n/a")


if __name__ == "__main__":
    main()
