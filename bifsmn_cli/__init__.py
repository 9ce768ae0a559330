"""bifsmn: binary neural networks for keyword spotting, from raw audio to 1-bit CPU kernels.

The library's main entry points, importable without the command line and loaded on first use (PEP 562), so
`import bifsmn_cli` stays cheap:

    from bifsmn_cli import Engine, Library, DFSMN, ModelConfig, load_model

The command line is `bifsmn_cli.commands` (the `bifsmn` script).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "AugmentConfig": "bifsmn_cli.audio.config",
    "DFSMN": "bifsmn_cli.nn.dfsmn",
    "Engine": "bifsmn_cli.engine.binding",
    "FrontEnd": "bifsmn_cli.audio.frontend",
    "FrontEndConfig": "bifsmn_cli.audio.config",
    "HEDConfig": "bifsmn_cli.nn.config",
    "Library": "bifsmn_cli.engine.binding",
    "ModelConfig": "bifsmn_cli.nn.config",
    "TrainConfig": "bifsmn_cli.train.config",
    "build_library": "bifsmn_cli.engine.build",
    "export_student": "bifsmn_cli.export.lowering",
    "export_teacher": "bifsmn_cli.export.lowering",
    "load_model": "bifsmn_cli.nn.model_file",
    "predict": "bifsmn_cli.engine.predict",
    "read_bfsm": "bifsmn_cli.export.bfsm",
    "save_model": "bifsmn_cli.nn.model_file",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
