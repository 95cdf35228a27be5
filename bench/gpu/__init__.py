"""The prepared GPU run: one command, every figure the GPU issues ask for (docs/benchmarks.md)."""
