"""The C inference engine (csrc/) from Python: the ctypes binding (binding.py: load .bfsm models, run them, reach
the raw kernels and the C front end), building and testing it with CMake (build.py), llvm-mca estimates of the
NEON kernels (mca.py) and `bifsmn predict` (predict.py)."""
