"""Which epoch's weights a training run ends with: chosen on a validation score (`select`: accuracy or balanced
accuracy), never on test.

The highest 1x score among epochs whose scores do not increase as the variant gets thinner
(1x >= 0.5x >= 0.25x: "ordered"), as long as it is within `tolerance` of the highest 1x score of any epoch;
otherwise that highest 1x score ("best-1x"). Without the tolerance a noisy thin variant can pin the choice to an
early epoch: a 40-epoch run on real speech kept epoch 7 (1x 82.8 %) over epoch 36 (89.5 %).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bifsmn_cli.nn.dfsmn import variant_ratio

KINDS = ("ordered", "any")  # the two rules tracked during training, in order of preference


def is_ordered(scores: dict[str, float], variants: Sequence[str]) -> bool:
    by_depth = sorted(variants, key=variant_ratio, reverse=True)
    return all(scores[a] >= scores[b] for a, b in zip(by_depth, by_depth[1:], strict=False))


class BestEpochs:
    """The best epoch under each rule so far; `state` is what the checkpoint stores."""

    def __init__(
        self,
        variants: Sequence[str],
        state: dict[str, dict[str, Any] | None] | None = None,
        tolerance: float = 0.0,
    ) -> None:
        self.variants, self.tolerance = tuple(variants), tolerance
        self.primary = max(self.variants, key=variant_ratio)
        self.state: dict[str, dict[str, Any] | None] = state or dict.fromkeys(KINDS)

    def update(self, epoch: int, scores: dict[str, float]) -> list[str]:
        """Record one epoch's validation scores; returns the rules under which it is the new best."""
        improved = []
        for kind, eligible in (("ordered", is_ordered(scores, self.variants)), ("any", True)):
            best = self.state[kind]
            if eligible and (best is None or scores[self.primary] > best["score"]):
                self.state[kind] = {"epoch": epoch, "score": scores[self.primary]}
                improved.append(kind)
        return improved

    @property
    def kind(self) -> str:
        """The rule that decides: ordered when an ordered epoch is within the tolerance of the best epoch."""
        ordered, best = self.state["ordered"], self.state["any"]
        if ordered is not None and (best is None or ordered["score"] >= best["score"] - self.tolerance):
            return "ordered"
        return "any"

    @property
    def epoch(self) -> int:
        chosen = self.state[self.kind]
        assert chosen is not None, "no epoch recorded"
        return chosen["epoch"]

    @property
    def selection(self) -> str:
        return "ordered" if self.kind == "ordered" else "best-1x"
