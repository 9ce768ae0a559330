"""Pipeline files: a YAML document validated against a schema before any work starts.

Every key has a declared kind, default and range, so a typo or a wrong type fails at once with the key path
(`featurize.n_mels: expected a positive integer, got "x"`) instead of deep inside a stage an hour later.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bifsmn_cli.errors import UserError


@dataclass(frozen=True)
class Field:
    """One key of a config section: its kind ("int", "float", "bool", "str", "list"), default and limits."""

    kind: str
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    item: str | None = None  # the kind of each element of a list
    nullable: bool = False

    def describe(self) -> str:
        """The expected value in words, as used in error messages."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind == "list":
            return f"a list of {_KIND_WORDS[self.item or 'str']}s"
        word = _KIND_WORDS[self.kind]
        if self.kind in ("int", "float"):
            if self.min == 1 and self.kind == "int" and self.max is None:
                return "a positive integer"
            if self.min == 0 and self.max is None:
                return f"a non-negative {word}"
            if self.min is not None and self.max is not None:
                return f"{_article(word)} {word} in [{self.min:g}, {self.max:g}]"
            if self.min is not None:
                return f"{_article(word)} {word} >= {self.min:g}"
            if self.max is not None:
                return f"{_article(word)} {word} <= {self.max:g}"
        return f"{_article(word)} {word}"

    def coerce(self, value: Any, key: str) -> Any:
        """Check and normalise one value; raise a UserError naming `key` when it does not fit."""
        if value is None and self.nullable:
            return None
        if self.kind == "list":
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise self._error(key, value)
            inner = Field(self.item or "str", None, min=self.min, max=self.max, choices=self.choices)
            return [inner.coerce(v, f"{key}[{i}]") for i, v in enumerate(value)]
        checked = _COERCE[self.kind](value)
        if checked is _BAD:
            raise self._error(key, value)
        if self.choices is not None and checked not in self.choices:
            raise self._error(key, value)
        if self.kind in ("int", "float"):
            if (self.min is not None and checked < self.min) or (self.max is not None and checked > self.max):
                raise self._error(key, value)
        return checked

    def _error(self, key: str, value: Any) -> UserError:
        shown = f'"{value}"' if isinstance(value, str) else repr(value) if value is not None else "null"
        return UserError(f"{key}: expected {self.describe()}, got {shown}")


_KIND_WORDS = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}
_BAD = object()


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _as_int(v: Any) -> Any:
    if isinstance(v, bool):
        return _BAD
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return _BAD


def _as_float(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return _BAD
    return float(v)


def _as_bool(v: Any) -> Any:
    return v if isinstance(v, bool) else _BAD


def _as_str(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)  # `--set download.version=2` arrives as a YAML number
    return _BAD


_COERCE = {"int": _as_int, "float": _as_float, "bool": _as_bool, "str": _as_str}


def Int(default: Any, help: str = "", min: float | None = None, max: float | None = None, **kw: Any) -> Field:
    return Field("int", default, help, min, max, **kw)


def Float(
    default: Any, help: str = "", min: float | None = None, max: float | None = None, **kw: Any
) -> Field:
    return Field("float", default, help, min, max, **kw)


def Bool(default: bool, help: str = "") -> Field:
    return Field("bool", default, help)


def Str(default: Any, help: str = "", choices: tuple[str, ...] | None = None, **kw: Any) -> Field:
    return Field("str", default, help, choices=choices, **kw)


def List(item: str, default: list[Any], help: str = "", **kw: Any) -> Field:
    return Field("list", default, help, item=item, **kw)


Schema = Mapping[str, Field]

_PY_KINDS = {int: "int", float: "float", bool: "bool", str: "str"}


def schema_from_dataclass(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Field]:
    """Derive a section schema from a config dataclass (e.g. the model's) so the two can never disagree.

    Limits come from each field's `metadata` (`min`, `max`, `choices`, `help`); `exclude` names fields that are
    not pipeline keys (set by the data or by another section).
    """
    hints = typing.get_type_hints(cls)
    schema: dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        hint = hints[f.name]
        nullable = False
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            nullable, hint = True, args[0]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        origin = typing.get_origin(hint)
        meta = dict(f.metadata)
        if origin in (list, tuple):
            item = typing.get_args(hint)[0] if typing.get_args(hint) else str
            schema[f.name] = Field("list", list(default), item=_PY_KINDS[item], nullable=nullable, **meta)
        else:
            schema[f.name] = Field(_PY_KINDS[hint], default, nullable=nullable, **meta)
    return schema


_T = typing.TypeVar("_T")


def dataclass_from_section(
    cls: type[_T], section: Mapping[str, Any], unknown: str | None = None, **fixed: Any
) -> _T:
    """An instance of config dataclass `cls` from the keys of `section` that are its fields, plus `fixed` values.

    A section may hold keys for other consumers (the `featurize:` section feeds the front end and the task), so
    other keys are ignored, unless `unknown` names the section: then they are refused with the known keys listed.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if unknown is not None:
        for key in section:
            if key not in names:
                raise UserError(f"{unknown}.{key}: unknown key; known keys: {', '.join(names)}")
    return cls(**{k: v for k, v in section.items() if k in names}, **fixed)


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. PyYAML's 1.1 rules turn the keywords yes/no/on/off into booleans."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


TOP_LEVEL: dict[str, Field] = {
    "name": Str(None, "name of the run"),
    "description": Str("", "free text"),
    "workspace": Str(None, "directory for every artifact, relative to the current directory"),
    "seed": Int(0, "seed for every random choice", min=0),
}


@dataclass
class Pipeline:
    """A validated pipeline file: top-level settings plus one resolved section per stage."""

    path: Path
    name: str
    workspace: Path
    seed: int
    description: str
    sections: dict[str, dict[str, Any]]

    def section(self, name: str) -> dict[str, Any]:
        return self.sections[name]


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; syntax errors name the file, line and column."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: pipeline file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read pipeline file ({exc})") from None
    try:
        return yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{where}: YAML syntax error: {problem}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value); the value is read as YAML so it gets a type."""
    if "=" not in text:
        raise UserError(f"--set {text}: expected section.key=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise UserError(f"--set {text}: expected section.key=value")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(doc: dict[str, Any], overrides: list[str]) -> None:
    for text in overrides:
        parts, value = parse_override(text)
        node = doc
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {text}: {part} is not a section")
            node = child
        node[parts[-1]] = value


def validate_section(name: str, raw: Any, schema: Schema) -> dict[str, Any]:
    """Fill defaults and check every key of one section against its schema."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{name}: expected a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        known = ", ".join(sorted(schema))
        raise UserError(f"{name}.{unknown[0]}: unknown key (known keys: {known})")
    resolved: dict[str, Any] = {}
    for key, field in schema.items():
        if key in raw:
            resolved[key] = field.coerce(raw[key], f"{name}.{key}")
        else:
            resolved[key] = field.default
    return resolved


def load_pipeline(path: Path, sections: Mapping[str, Schema], overrides: list[str] | None = None) -> Pipeline:
    """Read, override and validate a pipeline file against the section schemas of every stage."""
    path = Path(path)
    doc = read_yaml(path)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}")
    apply_overrides(doc, overrides or [])
    unknown = sorted(set(doc) - set(TOP_LEVEL) - set(sections))
    if unknown:
        raise UserError(
            f"{unknown[0]}: unknown key in {path} (sections: {', '.join(sorted(sections))}; "
            f"top level: {', '.join(TOP_LEVEL)})"
        )
    top = {
        key: field.coerce(doc[key], key) if key in doc else field.default for key, field in TOP_LEVEL.items()
    }
    for required in ("name", "workspace"):
        if not top[required]:
            raise UserError(f"{required}: missing in {path}; every pipeline names its run and its workspace")
    resolved = {name: validate_section(name, doc.get(name), schema) for name, schema in sections.items()}
    return Pipeline(
        path=path,
        name=top["name"],
        workspace=Path(top["workspace"]).expanduser().resolve(),  # stages run tools from other directories
        seed=top["seed"],
        description=top["description"],
        sections=resolved,
    )
