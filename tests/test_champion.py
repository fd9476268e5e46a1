"""Champion versus challenger on real models: noise is never promoted, a clear gain is, unfair or thin
comparisons are refused, and the derived features are the same however much history is at hand."""

import numpy as np
import pandas as pd
import pytest

from edge.features import derive
from shared.champion import choose_candidate, decide, paired_bootstrap
from shared.dataset import TIMESTAMP, read_table
from shared.modeling import build_pipeline, features_of, labelled, per_row_loss, prepare
from tests.conftest import decision, monthly_csv, months_from


@pytest.fixture(scope="module")
def april(fast_spec):
    """A real model trained on Jan-Mar 2015 of one station, and its predictions on April."""
    months = monthly_csv("Dongsi", months_from(2015, 1, 4))
    frame = pd.concat(
        [read_table(payload, f"Dongsi/{y}/{m:02d}/01/x.csv", fast_spec) for (y, m), payload in months.items()],
        ignore_index=True,
    )
    rows = labelled(prepare(frame, fast_spec), fast_spec)
    train, test = rows[rows[TIMESTAMP] < "2015-04-01"], rows[rows[TIMESTAMP] >= "2015-04-01"]
    model = build_pipeline(fast_spec).fit(features_of(train, fast_spec), train[fast_spec.target])
    return test[fast_spec.target].to_numpy(), model.predict(features_of(test, fast_spec))


def verdict(target, champion_predictions, challenger_predictions, spec):
    champion_rows = per_row_loss(target, champion_predictions, spec)
    challenger_rows = per_row_loss(target, challenger_predictions, spec)
    return decide(
        champion_version=1,
        champion_train_end="2015-03-31T23:00:00",
        champion_loss=float(np.sqrt(champion_rows.mean())),
        challenger_version=2,
        challenger_loss=float(np.sqrt(challenger_rows.mean())),
        eval_start="2015-03-31T23:00:00",
        eval_end="2015-04-30T23:00:00",
        eval_rows=len(target),
        min_rows=200,
        margin=0.0,
        loss_name="rmse",
        paired_test=paired_bootstrap(champion_rows, challenger_rows),
    )


def test_a_challenger_equal_to_the_champion_plus_noise_is_never_promoted(april, fast_spec):
    target, predictions = april
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(0, 3.0, len(predictions))
        assert verdict(target, predictions, predictions + noise, fast_spec).decision == "keep"
        # Even when the noise happens to lower the loss a little, the paired test calls it noise.
        tiny = np.random.default_rng(seed).normal(0, 0.5, len(predictions))
        assert verdict(target, predictions + tiny, predictions, fast_spec).decision == "keep"


def test_a_clearly_better_challenger_is_promoted(april, fast_spec):
    target, predictions = april
    degraded = predictions + np.random.default_rng(7).normal(0, 25.0, len(predictions))
    result = verdict(target, degraded, predictions, fast_spec)
    assert result.decision == "promote" and result.paired_test["low"] > 0


def test_the_bootstrap_is_reproducible_and_respects_autocorrelation(april, fast_spec):
    target, predictions = april
    gain = per_row_loss(target, predictions + 5, fast_spec) - per_row_loss(target, predictions, fast_spec)
    first = paired_bootstrap(gain, np.zeros_like(gain))
    assert first == paired_bootstrap(gain, np.zeros_like(gain))  # seeded: same rows, same answer
    wide = paired_bootstrap(gain, np.zeros_like(gain), block_rows=48)
    narrow = paired_bootstrap(gain, np.zeros_like(gain), block_rows=1)
    assert first.low <= first.mean_difference <= first.high
    assert wide.high - wide.low > narrow.high - narrow.low  # blocks keep the hourly correlation


def test_comparisons_are_refused_when_windows_differ_or_rows_are_too_few():
    other_window = decision(challenger_loss=10.0, champion_window=("2016-01-01T00:00:00", "2016-02-01T00:00:00"))
    assert other_window.decision == "keep" and "refused" in other_window.reason
    assert decision(challenger_loss=10.0, champion_window=("2016-02-01T00:00:00", "2016-03-01T00:00:00")).decision == "promote"
    too_few = decision(challenger_loss=10.0, eval_rows=150)
    assert too_few.decision == "keep" and "at least 200" in too_few.reason


def test_fleet_candidate_is_preferred_unless_the_own_model_is_better_beyond_noise(april, fast_spec):
    target, predictions = april
    own = per_row_loss(target, predictions, fast_spec)
    assert choose_candidate(own, None)[0] == "per_source"
    similar = per_row_loss(target, predictions + np.random.default_rng(1).normal(0, 1.0, len(predictions)), fast_spec)
    assert choose_candidate(own, similar)[0] == "fleet"
    much_worse = per_row_loss(target, predictions + np.random.default_rng(2).normal(0, 30.0, len(predictions)), fast_spec)
    assert choose_candidate(own, much_worse)[0] == "per_source"


def test_derived_features_do_not_depend_on_how_much_history_is_at_hand(fast_spec):
    frame = read_table(monthly_csv("Gucheng", [(2015, 7)])[(2015, 7)], "Gucheng/2015/07/01/x.csv", fast_spec)
    full = derive(frame, frame[TIMESTAMP], fast_spec.derived)
    recent = frame[frame[TIMESTAMP] >= "2015-07-20"]
    short = derive(recent, recent[TIMESTAMP], fast_spec.derived)
    names = fast_spec.derived_features
    # Rows with their whole look-back inside the short history get exactly the same values.
    settled = short[short[TIMESTAMP] >= "2015-07-21"].index
    pd.testing.assert_frame_equal(full.loc[settled, names], short.loc[settled, names])
    assert full["PM10_lag1h"].iloc[5] == frame["PM10"].iloc[4]


def test_an_unfair_comparison_does_not_report_the_champions_in_sample_loss_as_its_loss():
    from shared.fleet import _champion_loss

    unfair = decision(champion_train_end="2016-02-10T00:00:00", champion_loss=5.387)
    assert unfair.decision == "keep" and "unfair" in unfair.reason and unfair.champion_loss is None
    run = {"outcome": "kept", "champion_version": 1, "comparison": unfair.to_dict()}
    # The fleet view falls back to the champion's own measured loss, not the in-sample number.
    assert _champion_loss(run, {"metrics": {"rmse": 70.345}}, "rmse") == 70.345
    fair = decision(champion_loss=70.0)
    assert fair.champion_loss == 70.0
    assert _champion_loss({"outcome": "kept", "champion_version": 1, "comparison": fair.to_dict()}, None, "rmse") == 70.0
