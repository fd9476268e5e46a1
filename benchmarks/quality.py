"""Model quality on the air-quality time split, with the product's own training code.

Train 2013-03-01..2016-02-29, test 2016-03-01..2017-02-28 (rows with a target). Per source it prints the
test RMSE of:
  baseline_source   HistGradientBoostingRegressor(max_iter=200) per station on the base features
  baseline_pooled   the same, one model on all stations (station one-hot)
  per_source        the product's per-source candidate (the spec's features, derived ones included)
  fleet             the product's fleet candidate (all sources, the source as a feature)
  champion          the candidate the product chooses (shared.champion.choose_candidate) on the
                    source's own last 30 days of the training period (both trained before that window)
and ends with `fleet_rmse=<mean champion RMSE over the sources>`.

    .venv/bin/python benchmarks/quality.py [--spec specs/air-quality.json] [--stations N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.champion import choose_candidate  # noqa: E402
from shared.dataset import TIMESTAMP, read_table  # noqa: E402
from shared.fleet_model import SOURCE_COLUMN  # noqa: E402
from shared.modeling import aggregate_loss, build_pipeline, features_of, labelled, per_row_loss, prepare  # noqa: E402
from shared.settings import PROJECT_ROOT  # noqa: E402
from shared.spec import load_spec, parse_spec  # noqa: E402

TRAIN_END = pd.Timestamp("2016-03-01")
TEST_END = pd.Timestamp("2017-03-01")
DATA = PROJECT_ROOT / "data" / "air-quality"


def load(spec, limit: int | None) -> dict[str, pd.DataFrame]:
    frames = {}
    for path in sorted(DATA.glob("*.csv.gz"))[:limit]:
        source_id = path.name.split("_")[2]
        frame = read_table(path.read_bytes(), path.name, spec)
        frame[SOURCE_COLUMN] = source_id
        frames[source_id] = frame
    return frames


def fit(rows: pd.DataFrame, spec):
    model = build_pipeline(spec)
    return model.fit(features_of(rows, spec), rows[spec.target])


def rmse_on(model, rows: pd.DataFrame, spec) -> tuple[float, np.ndarray]:
    losses = per_row_loss(rows[spec.target].to_numpy(), model.predict(features_of(rows, spec)), spec)
    return aggregate_loss(losses, spec), losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(PROJECT_ROOT / "specs" / "air-quality.json"))
    parser.add_argument("--stations", type=int, help="only the first N stations (quick check)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    fleet_spec = spec.with_constant_feature(SOURCE_COLUMN)
    base_raw = {key: value for key, value in spec.raw.items() if key != "derived_features"}
    base_raw["estimator"] = {
        "class": "sklearn.ensemble.HistGradientBoostingRegressor",
        "params": {"max_iter": 200, "random_state": 0},
    }
    base_spec = parse_spec(base_raw)
    pooled_base_spec = base_spec.with_constant_feature(SOURCE_COLUMN)
    clock = time.perf_counter()
    raw = load(spec, args.stations)
    prepared = {source: labelled(prepare(frame, spec), spec) for source, frame in raw.items()}
    base = {source: labelled(frame, spec) for source, frame in raw.items()}
    window_start = TRAIN_END - pd.Timedelta(days=spec.eval_window_days)

    def period(frames, start=None, end=None):
        parts = []
        for frame in frames.values():
            mask = pd.Series(True, index=frame.index)
            if start is not None:
                mask &= frame[TIMESTAMP] >= start
            if end is not None:
                mask &= frame[TIMESTAMP] < end
            parts.append(frame.loc[mask])
        return pd.concat(parts, ignore_index=True)

    def rows(frame, start=None, end=None):
        return period({"x": frame}, start, end)

    print(f"loaded {len(raw)} sources in {time.perf_counter() - clock:.1f} s", flush=True)
    clock = time.perf_counter()
    pooled_baseline = fit(period(base, end=TRAIN_END), pooled_base_spec)
    fleet_final = fit(period(prepared, end=TRAIN_END), fleet_spec)
    fleet_for_choice = fit(period(prepared, end=window_start), fleet_spec)
    print(f"pooled models trained in {time.perf_counter() - clock:.1f} s", flush=True)

    results = []
    header = f"{'source':14s} {'baseline_source':>15s} {'baseline_pooled':>15s} {'per_source':>10s} {'fleet':>8s} {'champion':>8s}  chosen"
    print(header, flush=True)
    for source in raw:
        train_base, test_base = rows(base[source], end=TRAIN_END), rows(base[source], TRAIN_END, TEST_END)
        train, test = rows(prepared[source], end=TRAIN_END), rows(prepared[source], TRAIN_END, TEST_END)
        baseline_source = rmse_on(fit(train_base, base_spec), test_base, base_spec)[0]
        baseline_pooled = rmse_on(pooled_baseline, test_base, pooled_base_spec)[0]
        per_source_model = fit(train, spec)
        per_source = rmse_on(per_source_model, test, spec)[0]
        fleet = rmse_on(fleet_final, test, fleet_spec)[0]

        # The product's choice: both candidates trained before the source's last window, judged on it.
        before, window = rows(prepared[source], end=window_start), rows(prepared[source], window_start, TRAIN_END)
        own_for_choice = fit(before, spec)
        own_loss, own_rows = rmse_on(own_for_choice, window, spec)
        fleet_loss, fleet_rows = rmse_on(fleet_for_choice, window, fleet_spec)
        chosen, _ = choose_candidate(own_rows, fleet_rows)
        # The chosen candidate, retrained on the whole training period as the next run would.
        champion = fleet if chosen == "fleet" else per_source
        results.append((source, baseline_source, baseline_pooled, per_source, fleet, champion))
        print(
            f"{source:14s} {baseline_source:15.3f} {baseline_pooled:15.3f} {per_source:10.3f} {fleet:8.3f} {champion:8.3f}  {chosen}",
            flush=True,
        )
    table = np.array([result[1:] for result in results])
    means = table.mean(axis=0)
    print(f"{'fleet mean':14s} {means[0]:15.3f} {means[1]:15.3f} {means[2]:10.3f} {means[3]:8.3f} {means[4]:8.3f}")
    beaten = sum(1 for row in table if row[4] <= min(row[0], row[1]))
    print(
        f"champion no worse than the better baseline on {beaten}/{len(table)} sources; "
        f"vs baseline_pooled {means[4] / means[1]:.3f}x, vs baseline_source {means[4] / means[0]:.3f}x"
    )
    print(f"fleet_rmse={means[4]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
