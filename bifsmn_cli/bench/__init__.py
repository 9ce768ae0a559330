"""Benchmarks: accuracy (PyTorch vs the C engine), latency, kernel throughput against the CPU's peak, ARM
figures (llvm-mca, qemu instruction counts, a board over ssh), and the report and plots that present them."""
