"""The `download` stage: a corpus in the Speech Commands layout from one of the data sources
(bifsmn_cli/data/sources: `speech_commands`, `synthetic`, `folder`), recorded in `corpus.json` for featurize.

The state directory is kept after success (`keep_state`): a rerun reuses verified archives.
"""

from __future__ import annotations

from typing import Any

from bifsmn_cli.data.corpus import scan
from bifsmn_cli.data.sources import registry
from stages.pipeline.stage import StageContext, StageSpec

RECORD = "corpus.json"
SPEC = StageSpec(
    name="download",
    schema=registry.schema(),
    outputs=(RECORD, "data/", "test_data/"),
    keep_state=True,
)


def run(ctx: StageContext) -> dict[str, Any]:
    record = registry.fetch(ctx.config, ctx.out_dir, ctx.state_dir, ctx.seed)
    for tree in record.trees:
        ctx.mark_bulk(tree)
    scanned = scan(record.root_path(ctx.out_dir))
    record.words = {w: len(p) for w, p in scanned.clips.items()}
    record.noises = scanned.noises
    record.save(ctx.out_dir / RECORD)
    return {
        "source": record.source,
        "words": len(scanned.clips),
        "clips": sum(record.words.values()),
        "noises": len(scanned.noises),
        **{k: v for k, v in record.details.items() if k in ("ms_per_utterance", "speakers")},
    }
