"""HER2 scoring from H&E with optional IHC (seed 001)."""
