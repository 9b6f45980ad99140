"""Frozen encoders that turn items into float32, L2-normalised vectors, one plugin per kind."""
