"""Evaluation: frozen evaluation sets, offline and online metrics, champion/challenger."""
