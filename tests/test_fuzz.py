"""libFuzzer on the C engine's parsers (csrc/fuzz/): the seeds are valid inputs the engine runs, and a short run of
each target finds no crash. The run is a fixed number of executions from a fixed seed (BIFSMN_FUZZ_RUNS scales
it), not a time budget, so it does the same work on a fast or a loaded machine. Skipped without libFuzzer."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf

from bifsmn_cli.engine import build
from bifsmn_cli.engine.binding import Engine, Library
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.bfsm import read_bfsm

# about 10 s each on one core here: the loader runs a whole network per input, the WAV reader only parses,
# the stream pushes up to 3 s of audio twice
pytestmark = pytest.mark.slow  # a clang build and three libFuzzer runs

FUZZ_RUNS = {"loader": 80_000, "wav": 2_000_000, "stream": 400}
RUNS_SCALE = float(os.environ.get("BIFSMN_FUZZ_RUNS", "1"))


def _load_driver():
    spec = importlib.util.spec_from_file_location("bifsmn_fuzz_driver", build.CSRC / "fuzz" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


fuzz = _load_driver()


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory):
    """The fuzz preset built once in a private directory (so a concurrent `make fuzz` is not disturbed)."""
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (apt install clang): no libFuzzer")
    build_dir = tmp_path_factory.mktemp("fuzz") / "cmake"
    try:
        binaries = fuzz.build_fuzzers(build_dir)
    except UserError as exc:
        if "cannot link -fsanitize=fuzzer" in str(exc):
            pytest.skip(f"this clang has no libFuzzer: {exc}")
        raise
    return build_dir, binaries


def test_seeds_are_inputs_the_engine_runs(fuzz_build, tmp_path):
    build_dir, _ = fuzz_build
    build.build(
        build_dir, build_dir / "fuzz-build.log", 2, targets=["bifsmn"]
    )  # the plain library, same sources
    lib = Library(build_dir / "libbifsmn.so")
    models = fuzz.write_seeds("loader", tmp_path / "loader")
    assert [p.name for p in models] == [
        "student-1x.bfsm",
        "student-0.5x.bfsm",
        "student-1x-fp16.bfsm",
        "student-1x-int8.bfsm",
        "teacher.bfsm",
    ]
    stored = {
        p.name: {op["weight_storage"] for op in read_bfsm(p)["ops"] if not op["binary"]} for p in models
    }
    assert stored["student-1x-fp16.bfsm"] == {"fp16"} and stored["student-1x-int8.bfsm"] == {"int8"}
    for path in models:
        with Engine.from_bytes(path.read_bytes(), lib) as engine:
            scores = engine.run_pcm(np.zeros(fuzz.SEED_FRONTEND.num_samples, dtype=np.int16))
            assert scores.shape == (len(fuzz.SEED_CLASSES),) and np.isfinite(scores).all()
    clips = {p.name: sf.info(p) for p in fuzz.write_seeds("wav", tmp_path / "wav")}
    assert clips["stereo.wav"].channels == 2 and clips["extensible.wav"].format == "WAVEX"
    assert clips["list-chunk.wav"].frames == 64 and clips["float.wav"].subtype == "FLOAT"


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_short_fuzz_run_finds_no_crash(fuzz_build, tmp_path, target):
    _, binaries = fuzz_build
    seeds = tmp_path / "seeds"
    fuzz.write_seeds(target, seeds)
    runs = max(1, round(FUZZ_RUNS[target] * RUNS_SCALE))
    run = fuzz.run_target(target, binaries[target], tmp_path, seeds, runs=runs)
    print(
        f"{target}: {run.execs} executions in {run.seconds} s, cov {run.coverage}, corpus {run.corpus_units}"
    )
    log = open(run.log).read()
    assert run.exit_code == 0 and not run.crashes, log[-3000:]
    assert run.execs >= runs and run.coverage > 0 and run.corpus_units > 0, log[-3000:]
    assert "INITED" in log and "Done" in log
