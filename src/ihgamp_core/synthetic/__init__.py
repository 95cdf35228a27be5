"""Synthetic H&E slides and the bundled sample cases (deterministic, no patient data)."""
