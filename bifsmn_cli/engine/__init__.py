"""ctypes binding to the C inference engine (csrc/): load .bfsm models, run them, reach the raw kernels."""

from bifsmn_cli.engine.binding import IMPLS, Engine, Frontend, Library, build_library, find_library

__all__ = ["IMPLS", "Engine", "Frontend", "Library", "build_library", "find_library"]
