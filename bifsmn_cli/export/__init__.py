"""Model export: the `.bfsm` format for the C engine and its C-header form (bfsm.py), the lowering of a PyTorch
model to the engine's ops (lowering.py), the engine-against-PyTorch check (engine_check.py), and ONNX for the
teacher (onnx_export.py)."""
