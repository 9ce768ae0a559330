"""Model export: the `.bfsm` packed format for the C engine, its C-header form, and ONNX for the teacher."""

from bifsmn_cli.export.bfsm import (
    FORMAT_VERSION,
    FrontendSettings,
    export_student,
    export_teacher,
    pack_signs,
    read_bfsm,
    unpack_signs,
    write_c_header,
)
from bifsmn_cli.export.onnx_export import export_teacher_onnx, onnx_available

__all__ = [
    "FORMAT_VERSION",
    "FrontendSettings",
    "export_student",
    "export_teacher",
    "export_teacher_onnx",
    "onnx_available",
    "pack_signs",
    "read_bfsm",
    "unpack_signs",
    "write_c_header",
]
