"""The `export` stage."""

from __future__ import annotations

from typing import Any

from stages.base import StageContext, StageSpec, not_implemented

SPEC = StageSpec(name="export", schema={})


def run(ctx: StageContext) -> dict[str, Any]:
    not_implemented("export", "deployment issue")
    return {}
