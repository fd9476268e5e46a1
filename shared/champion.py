"""Champion versus challenger: the rules that decide whether the source's best model changes.

A challenger replaces the champion only when the comparison is fair (same rows, rows the champion
never trained on, enough of them), the improvement is above a margin, and a paired moving-block
bootstrap of the per-row loss differences says the improvement is not noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PairedTest:
    mean_difference: float  # mean of champion row loss - challenger row loss (positive: challenger better)
    low: float
    high: float
    confidence: float
    resamples: int
    block_rows: int

    def to_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(
    champion_row_losses: np.ndarray,
    challenger_row_losses: np.ndarray,
    *,
    block_rows: int = 24,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedTest:
    """Confidence interval of the mean per-row loss difference, resampling contiguous blocks of rows.

    Blocks keep the autocorrelation of time series (hourly readings are not independent), which an
    ordinary bootstrap would ignore and so would call noise significant. Seeded: same rows, same answer.
    """
    differences = np.asarray(champion_row_losses, dtype="float64") - np.asarray(challenger_row_losses, dtype="float64")
    count = len(differences)
    if count == 0:
        return PairedTest(float("nan"), float("nan"), float("nan"), confidence, 0, block_rows)
    block = max(1, min(block_rows, count))
    blocks_needed = int(np.ceil(count / block))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, count - block + 1, size=(resamples, blocks_needed))
    indices = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(resamples, -1)[:, :count]
    means = differences[indices].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedTest(float(differences.mean()), float(low), float(high), confidence, resamples, block)


@dataclass(frozen=True)
class Comparison:
    decision: str  # "promote" or "keep"
    reason: str
    champion_version: int | None
    challenger_version: int
    champion_loss: float | None
    challenger_loss: float
    eval_start: str
    eval_end: str
    eval_rows: int
    relative_improvement: float | None
    paired_test: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    *,
    champion_version: int | None,
    champion_train_end: str | None,
    champion_loss: float | None,
    challenger_version: int,
    challenger_loss: float,
    eval_start: str,
    eval_end: str,
    eval_rows: int,
    min_rows: int,
    margin: float,
    loss_name: str,
    paired_test: PairedTest | None = None,
    champion_window: tuple[str, str] | None = None,
) -> Comparison:
    """The decision and its reason. `champion_window`, when the champion's loss was measured elsewhere,
    must be the challenger's window: losses on different rows are not comparable."""

    def result(decision: str, reason: str, improvement: float | None = None) -> Comparison:
        return Comparison(
            decision,
            reason,
            champion_version,
            challenger_version,
            champion_loss,
            challenger_loss,
            eval_start,
            eval_end,
            eval_rows,
            improvement,
            paired_test.to_dict() if paired_test else None,
        )

    if not pd.notna(challenger_loss):
        return result("keep", "the challenger's loss could not be computed")
    if champion_version is None:
        return result("promote", "no champion yet: the first valid model becomes champion")
    if champion_window is not None and tuple(champion_window) != (eval_start, eval_end):
        return result(
            "keep",
            f"comparison refused: champion measured on {champion_window[0]}..{champion_window[1]}, "
            f"challenger on {eval_start}..{eval_end}",
        )
    if eval_rows < min_rows:
        return result("keep", f"only {eval_rows} evaluation rows; at least {min_rows} are needed for a fair comparison")
    if champion_train_end is None or pd.Timestamp(champion_train_end) > pd.Timestamp(eval_start):
        unfair = result(
            "keep",
            f"unfair comparison refused: champion v{champion_version} trained on rows up to {champion_train_end}, "
            f"inside the evaluation window after {eval_start}",
        )
        # Its loss on rows it trained on says nothing of how it serves: not reported as its loss.
        return replace(unfair, champion_loss=None)
    if champion_loss is None or not pd.notna(champion_loss):
        return result("keep", "the champion's loss on the evaluation rows could not be computed")
    improvement = (champion_loss - challenger_loss) / champion_loss if champion_loss else 0.0
    losses = f"challenger {loss_name} {challenger_loss:.3f} vs champion {champion_loss:.3f}"
    if improvement <= margin:
        return result("keep", f"{losses}: improvement {improvement:.1%} is not above the {margin:.1%} margin", improvement)
    if paired_test is not None and not paired_test.low > 0:
        return result(
            "keep",
            f"{losses}: improvement {improvement:.1%} is within noise (paired block bootstrap "
            f"{paired_test.confidence:.0%} interval of the per-row gain {paired_test.low:.2f}..{paired_test.high:.2f} includes 0)",
            improvement,
        )
    return result(
        "promote",
        f"{losses}: {improvement:.1%} better (margin {margin:.1%}) on {eval_rows} rows"
        + (
            f", per-row gain {paired_test.low:.2f}..{paired_test.high:.2f} at {paired_test.confidence:.0%}" if paired_test else ""
        ),
        improvement,
    )


def choose_candidate(
    source_row_losses: np.ndarray,
    fleet_row_losses: np.ndarray | None,
    *,
    block_rows: int = 24,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> tuple[str, str]:
    """Which candidate faces the champion: the fleet model, unless the source's own model is better on the
    window beyond noise. Pooling many similar sources gives a steadier model; one month of one source's
    rows is too little evidence to prefer the noisier per-source fit on a small difference."""
    if fleet_row_losses is None:
        return "per_source", "no fleet candidate for this window"
    test = paired_bootstrap(
        fleet_row_losses, source_row_losses, block_rows=block_rows, resamples=resamples, confidence=confidence
    )
    if test.low > 0:
        return (
            "per_source",
            f"the source's own model is better than the fleet model (per-row gain {test.low:.2f}..{test.high:.2f})",
        )
    return "fleet", "the fleet model, as the source's own model is not better beyond noise"
