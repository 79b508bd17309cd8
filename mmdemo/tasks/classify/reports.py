"""What a training run reports: the leaderboard rows and the whole run's report.

Apart from the trainer so that head files (which record a report's winner) and the
training job can both use them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LeaderRow:
    name: str  # the head kind, or "image only" etc. for a baseline
    kind: str
    modalities: tuple[str, ...]
    accuracy: float
    macro_f1: float
    per_class_recall: dict[str, float]
    confusion: list[list[int]]
    best_epoch: int
    seconds: float
    baseline: bool = False

    def at_chance(self, chance: float) -> bool:
        from mmdemo.head_kinds import is_at_chance

        return is_at_chance(self.accuracy, chance)

    def to_dict(self, chance: float | None = None) -> dict:
        return {"name": self.name, "kind": self.kind, "modalities": list(self.modalities),
                "accuracy": round(self.accuracy, 4), "macro_f1": round(self.macro_f1, 4),
                "at_chance": None if chance is None else self.at_chance(chance),
                "per_class_recall": {k: round(v, 4) for k, v in self.per_class_recall.items()},
                "best_epoch": self.best_epoch, "seconds": self.seconds, "baseline": self.baseline}


@dataclass
class TrainReport:
    dataset: str
    n_examples: int
    n_train: int
    n_val: int
    label_names: list[str]
    modalities: tuple[str, ...]
    leaderboard: list[LeaderRow]  # best first
    winner: LeaderRow
    winner_head: object
    history: list[dict]
    features_cached: bool
    feature_seconds: float
    train_seconds: float
    notices: list[str] = field(default_factory=list)
    heads: dict = field(default_factory=dict)  # every trained fusion head by kind, for evaluation elsewhere
    baseline_heads: dict = field(default_factory=dict)  # the single-modality baselines by row name ("image only")
    saved_as: str | None = None
    saved_path: Path | None = None

    @property
    def chance(self) -> float:
        return 1.0 / max(1, len(self.label_names))

    def best_single(self) -> float | None:
        """The best single-modality baseline's validation accuracy (None: no baselines run)."""
        singles = [r.accuracy for r in self.leaderboard if r.baseline]
        return max(singles) if singles else None

    def quality(self, row: LeaderRow | None = None) -> dict:
        """What a head file records of how good ``row`` (the winner) is: held-out accuracy on
        the validation split, the task's chance and the best single modality beside it."""
        row = row or self.winner
        best = self.best_single()
        return {"accuracy": round(row.accuracy, 4), "chance": round(self.chance, 4),
                "best_single": None if best is None else round(best, 4), "n": self.n_val, "split": "validation"}

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "examples": self.n_examples, "train": self.n_train, "validation": self.n_val,
                "labels": self.label_names, "modalities": list(self.modalities),
                "leaderboard": [r.to_dict(self.chance) for r in self.leaderboard],
                "chance": round(self.chance, 4), "winner": self.winner.name,
                "winner_confusion": self.winner.confusion, "features_cached": self.features_cached,
                "feature_seconds": self.feature_seconds, "train_seconds": self.train_seconds,
                "saved_as": self.saved_as, "saved_path": str(self.saved_path) if self.saved_path else None,
                "notices": self.notices}
