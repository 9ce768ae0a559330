"""Which epoch's weights a training run ends with: chosen on a validation score (`select`: accuracy or balanced
accuracy), never on test.

The highest 1x score among epochs whose scores do not increase as the variant gets thinner
(1x >= 0.5x >= 0.25x: "ordered"); if no epoch satisfies that, the highest 1x score ("best-1x").
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
        self, variants: Sequence[str], state: dict[str, dict[str, Any] | None] | None = None
    ) -> None:
        self.variants = tuple(variants)
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
        """The rule that decides: ordered when any epoch was ordered."""
        return "ordered" if self.state["ordered"] is not None else "any"

    @property
    def epoch(self) -> int:
        chosen = self.state[self.kind]
        assert chosen is not None, "no epoch recorded"
        return chosen["epoch"]

    @property
    def selection(self) -> str:
        return "ordered" if self.kind == "ordered" else "best-1x"
