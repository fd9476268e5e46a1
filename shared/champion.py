"""Champion versus challenger: the rules that decide whether the source's best model changes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd


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
) -> Comparison:
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
        )

    if not pd.notna(challenger_loss):
        return result("keep", "the challenger's loss could not be computed")
    if champion_version is None:
        return result("promote", "no champion yet: the first valid model becomes champion")
    if eval_rows < min_rows:
        return result("keep", f"only {eval_rows} evaluation rows; at least {min_rows} are needed for a fair comparison")
    if champion_train_end is None or pd.Timestamp(champion_train_end) > pd.Timestamp(eval_start):
        return result(
            "keep",
            f"unfair comparison refused: champion v{champion_version} trained on rows up to {champion_train_end}, "
            f"inside the evaluation window after {eval_start}",
        )
    if champion_loss is None or not pd.notna(champion_loss):
        return result("keep", "the champion's loss on the evaluation rows could not be computed")
    improvement = (champion_loss - challenger_loss) / champion_loss if champion_loss else 0.0
    if improvement > margin:
        return result(
            "promote",
            f"challenger {loss_name} {challenger_loss:.3f} beats champion {champion_loss:.3f} by {improvement:.1%} "
            f"(margin {margin:.1%}) on {eval_rows} rows",
            improvement,
        )
    return result(
        "keep",
        f"challenger {loss_name} {challenger_loss:.3f} vs champion {champion_loss:.3f}: improvement {improvement:.1%} "
        f"is not above the {margin:.1%} margin",
        improvement,
    )
