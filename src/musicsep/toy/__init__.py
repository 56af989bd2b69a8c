"""The built-in toy MUSDB: synthetic songs in exactly the MUSDB18 format, apart from the science.

Its defaults, shared by the command line and the config schema, live here."""

SEED = 2019
"""Seed of the whole toy dataset: names, songs and audio."""

TRAIN_TRACKS, TEST_TRACKS = 8, 3
"""Tracks in the toy train and test subsets, by default."""

SECONDS = 20.0
"""Length of each toy track, by default."""

VOICES = ("drums", "bass", "other", "vocals", "guitar", "piano")
"""The sources a toy dataset can have: MUSDB18's four, and a guitar and a piano."""
