"""The config sections more than one stage uses: the shared `model:` and `augment:` sections and the schema of a
training stage's own section, each derived from the library's config dataclass so the two can never disagree."""

from __future__ import annotations

from bifsmn_cli.audio.config import AugmentConfig
from bifsmn_cli.config import Schema, schema_from_dataclass
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.train.config import TrainConfig

# The data decides these three; the pipeline file sets everything else about the model.
MODEL_FROM_DATA = ("n_mels", "frames", "num_classes")
MODEL_SCHEMA = schema_from_dataclass(ModelConfig, exclude=MODEL_FROM_DATA)
AUGMENT_SCHEMA = schema_from_dataclass(AugmentConfig)
# The pipeline's top-level `seed` seeds training, and errors name the stage's own section, so neither is a key.
TRAIN_SCHEMA = schema_from_dataclass(TrainConfig, exclude=("seed", "key_prefix"))
SHARED: dict[str, Schema] = {"model": MODEL_SCHEMA, "augment": AUGMENT_SCHEMA}
