"""Neural networks: the D-FSMN model (teacher and thinnable binary student), binarizers and quantized layers, HED
distillation, model files and operation counting. `config.py` holds their torch-free settings."""
