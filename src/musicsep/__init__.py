"""musicsep: music source separation research on MUSDB18 as a Snakemake workflow."""

__version__ = "0.1.0"

SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
"""The four MUSDB18 source classes, in MUSDB's stream order after the mixture."""

STREAMS: tuple[str, ...] = ("mixture",) + SOURCES
"""The five streams of a MUSDB18 track (and the rows of a shard), in order."""

ORACLES: tuple[str, ...] = ("irm1", "irm2", "ibm", "ibm1", "ibm2", "mwf")
"""Oracle kinds: ideal ratio masks on magnitudes (1) and powers (2), the ideal
binary mask (each bin to its loudest source), SiSEC 2018's ideal binary masks
IBM1 and IBM2 (a source keeps the bins where its magnitude, or power, is at
least half the mixture's), and the multichannel Wiener filter of the true
sources (see :func:`musicsep.separate.oracle`)."""


class MusicsepError(Exception):
    """An error caused by input (a file, a key, an argument): shown to the user
    as one clear message, without a traceback."""
