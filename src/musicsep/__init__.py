"""musicsep: music source separation research on MUSDB18 as a Snakemake workflow."""

__version__ = "0.1.0"

SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
"""The four MUSDB18 source classes, in MUSDB's stream order after the mixture."""

STREAMS: tuple[str, ...] = ("mixture",) + SOURCES
"""The five streams of a MUSDB18 track (and the rows of a shard), in order."""


class MusicsepError(Exception):
    """An error caused by input (a file, a key, an argument): shown to the user
    as one clear message, without a traceback."""
