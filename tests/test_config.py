"""The pipeline schema: defaults, overrides, and one-line errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bifsmn_cli.config import Bool, Float, Int, List, Str, load_pipeline, schema_from_dataclass
from bifsmn_cli.errors import UserError

SECTIONS = {
    "featurize": {
        "n_mels": Int(32, min=1),
        "kind": Str("mel", choices=("mel", "mfcc")),
        "strict": Bool(False),
        "volume": Float(0.1, min=0, max=1),
        "words": List("str", []),
    }
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_defaults_and_values(tmp_path):
    p = load_pipeline(write(tmp_path, "name: a\nworkspace: w\nfeaturize:\n  n_mels: 40\n"), SECTIONS)
    assert p.name == "a" and p.workspace == Path("w").resolve() and p.seed == 0
    assert p.section("featurize") == {
        "n_mels": 40,
        "kind": "mel",
        "strict": False,
        "volume": 0.1,
        "words": [],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("featurize:\n  n_mels: x\n", 'featurize.n_mels: expected a positive integer, got "x"'),
        ("featurize:\n  n_mels: 0\n", "featurize.n_mels: expected a positive integer, got 0"),
        ("featurize:\n  n_mels: 2.5\n", "featurize.n_mels: expected a positive integer, got 2.5"),
        ("featurize:\n  nmels: 3\n", "featurize.nmels: unknown key"),
        ("featurize:\n  kind: wav\n", 'featurize.kind: expected one of mel, mfcc, got "wav"'),
        ("featurize:\n  strict: 1\n", "featurize.strict: expected a boolean, got 1"),
        ("featurize:\n  volume: 1.5\n", "featurize.volume: expected a number in [0, 1], got 1.5"),
        ("featurize:\n  words: yes\n", "featurize.words: expected a list of strings"),
        ("featurize:\n  words: [a, [b]]\n", "featurize.words[1]: expected a string"),
        ("train:\n  x: 1\n", "train: unknown key"),
        ("featurize: 3\n", "featurize: expected a mapping"),
    ],
)
def test_errors_name_the_key(tmp_path, body, message):
    with pytest.raises(UserError) as err:
        load_pipeline(write(tmp_path, "name: a\nworkspace: w\n" + body), SECTIONS)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, "name: a\nworkspace: w\nfeaturize:\n  n_mels: [1, 2\n")
    with pytest.raises(UserError) as err:
        load_pipeline(path, SECTIONS)
    assert str(err.value).startswith(f"{path}:5:1: YAML syntax error")


def test_missing_file_and_required_keys(tmp_path):
    with pytest.raises(UserError, match="pipeline file not found"):
        load_pipeline(tmp_path / "nope.yaml", SECTIONS)
    with pytest.raises(UserError, match="workspace: missing"):
        load_pipeline(write(tmp_path, "name: a\n"), SECTIONS)


def test_overrides_are_typed_by_the_schema(tmp_path):
    path = write(tmp_path, "name: a\nworkspace: w\n")
    p = load_pipeline(
        path, SECTIONS, ["featurize.n_mels=40", "featurize.words=[yes, no]", "workspace=x", "seed=3"]
    )
    assert p.section("featurize")["n_mels"] == 40 and p.section("featurize")["words"] == ["yes", "no"]
    assert p.workspace == Path("x").resolve() and p.seed == 3
    with pytest.raises(UserError, match='featurize.n_mels: expected a positive integer, got "big"'):
        load_pipeline(path, SECTIONS, ["featurize.n_mels=big"])
    with pytest.raises(UserError, match="expected section.key=value"):
        load_pipeline(path, SECTIONS, ["featurize.n_mels"])


def test_schema_from_dataclass():
    @dataclass
    class Cfg:
        blocks: int = field(default=8, metadata={"min": 1})
        rate: float = 0.1
        act: str = field(default="prelu", metadata={"choices": ("relu", "prelu")})
        sizes: tuple[int, ...] = (1, 2)
        dropout: float | None = None

    schema = schema_from_dataclass(Cfg)
    assert schema["blocks"].coerce(3, "m.blocks") == 3
    assert schema["sizes"].coerce([4], "m.sizes") == [4]
    assert schema["dropout"].coerce(None, "m.dropout") is None
    with pytest.raises(UserError, match="m.blocks: expected a positive integer"):
        schema["blocks"].coerce(0, "m.blocks")
    with pytest.raises(UserError, match="m.act: expected one of relu, prelu"):
        schema["act"].coerce("gelu", "m.act")


def test_keywords_yes_no_on_off_stay_words(tmp_path):
    """Speech Commands' words must not turn into YAML 1.1 booleans."""
    p = load_pipeline(
        write(tmp_path, "name: a\nworkspace: w\nfeaturize:\n  words: [yes, no, on, off]\n  strict: true\n"),
        SECTIONS,
    )
    assert p.section("featurize")["words"] == ["yes", "no", "on", "off"]
    assert p.section("featurize")["strict"] is True
