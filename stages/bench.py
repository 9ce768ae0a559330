"""The `bench` stage."""

from __future__ import annotations

from typing import Any

from stages.base import StageContext, StageSpec, not_implemented

SPEC = StageSpec(name="bench", schema={})


def run(ctx: StageContext) -> dict[str, Any]:
    not_implemented("bench", "bench issue")
    return {}
