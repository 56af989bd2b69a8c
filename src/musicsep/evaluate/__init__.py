"""Evaluation: BSS Eval v4 per track (museval), aggregation into tables."""
