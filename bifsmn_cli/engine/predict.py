"""`bifsmn predict`: classify audio clips with a .bfsm model in the C engine, without a pipeline or PyTorch.

Clips are decoded in Python (WAV or FLAC, any rate, mono or stereo: resampled and downmixed as featurize
would) and fitted to the model's clip length, then the engine runs its own front end and network on the int16
samples, so the scores are those a device running the same .bfsm would compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.audio.wav import SAMPLE_RATE, BadClip, Clip, fit_length, read_clip, resample, to_int16
from bifsmn_cli.console import info
from bifsmn_cli.engine.binding import Engine, Library
from bifsmn_cli.engine.build import CSRC, build_library, find_library
from bifsmn_cli.errors import UserError

# Where predict builds the engine when no library exists yet; find_library looks here next time.
BUILD_DIR = CSRC / "build" / "host-predict"


@dataclass
class Prediction:
    file: str
    top: list[dict[str, Any]]  # [{"class", "score" (softmax probability), "logit"}], best first
    fitted: str | None  # "padded" / "trimmed" when the clip was not exactly the model's length

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "top": self.top, "fitted": self.fitted}


def engine_library(path: Path | str | None = None, build_dir: Path = BUILD_DIR) -> Library:
    """The engine library: `path`, $BIFSMN_LIB or an existing build, else one built now into `build_dir`."""
    if path is not None:
        return Library(path)
    try:
        return Library(find_library())
    except UserError:
        info(f"no engine library found; building one in {build_dir}")
        return Library(build_library(build_dir))


def open_engine(model: Path | str, kernel: str = "auto", lib: Library | Path | str | None = None) -> Engine:
    """A .bfsm loaded in the engine library (`engine_library`); a one-line UserError when it is missing."""
    model = Path(model)
    if not model.is_file():
        raise UserError(f"{model}: no such model file")
    return Engine.load(model, lib if isinstance(lib, Library) else engine_library(lib), kernel)


def load_audio(path: Path, sample_rate: int) -> tuple[np.ndarray, Clip]:
    """A WAV or FLAC file of any length, rate and channel count as float mono at `sample_rate`, and what was
    done to it; a one-line UserError naming the file when it is not audio."""
    if not path.is_file():
        raise UserError(f"{path}: no such audio file")
    try:
        clip = read_clip(path, downmix=True)
    except BadClip as exc:
        raise UserError(f"{path}: {exc}") from None
    wave = clip.wave if sample_rate == SAMPLE_RATE else resample(clip.wave, SAMPLE_RATE, sample_rate)
    return wave, clip


def load_pcm(path: Path, sample_rate: int, num_samples: int) -> tuple[np.ndarray, str | None]:
    """One clip as the engine's int16 input, fitted to the model's clip length."""
    wave, fitted = fit_length(load_audio(path, sample_rate)[0], num_samples)
    return to_int16(wave), fitted


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits.astype(np.float64) - logits.max())
    return z / z.sum()


def predict(
    model: Path | str,
    clips: list[Path | str],
    top: int = 3,
    kernel: str = "auto",
    lib: Library | Path | str | None = None,
) -> list[Prediction]:
    """The `top` classes of each clip. Every clip is decoded before any runs, so a bad file fails fast."""
    if top < 1:
        raise UserError(f"--top: expected a positive integer, got {top}")
    if not clips:
        raise UserError("no clips given: bifsmn predict MODEL.bfsm CLIP.wav...")
    with open_engine(model, kernel, lib) as engine:
        inputs = [(Path(c), *load_pcm(Path(c), engine.sample_rate, engine.num_samples)) for c in clips]
        results = []
        for path, pcm, fitted in inputs:
            logits = engine.run_pcm(pcm)
            probs = softmax(logits)
            order = np.argsort(-logits, kind="stable")[: min(top, engine.num_classes)]
            best = [
                {"class": engine.classes[i], "score": float(probs[i]), "logit": float(logits[i])}
                for i in order
            ]
            results.append(Prediction(str(path), best, fitted))
    return results


def format_text(predictions: list[Prediction]) -> str:
    lines = []
    for p in predictions:
        lines.append(p.file + (f"  ({p.fitted} to the model's clip length)" if p.fitted else ""))
        lines += [f"  {t['class']:<16} {t['score']:.4f}" for t in p.top]
    return "\n".join(lines)
