"""musicsep: music source separation research on MUSDB18 as a Snakemake workflow.

The names and values every stage shares live here, once; this module imports
nothing beyond the standard library, so the workflow's parse time stays light.
"""

__version__ = "0.1.0"

SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
"""The four MUSDB18 source classes, in MUSDB's stream order after the mixture
(the order of every stacked array of sources and of the models' outputs)."""

STREAMS: tuple[str, ...] = ("mixture",) + SOURCES
"""The five streams of a MUSDB18 track (and the rows of a shard), in order."""

ACCOMPANIMENT: tuple[str, ...] = ("bass", "drums", "other")
"""The sources of musdb's ``accompaniment`` target, in the order musdb sums them."""

TARGETS: tuple[str, ...] = ("vocals", "drums", "bass", "other", "accompaniment")
"""What separation writes and evaluation scores, in the order of the tables."""


def targets_of(sources) -> tuple[str, ...]:
    """What a separation into ``sources`` writes and evaluation scores, in order:
    the sources, then ``accompaniment`` (the mixture minus the vocals) when one of
    at least two sources is named ``vocals``. :data:`TARGETS` for MUSDB18's four
    is the same set in the tables' order."""
    return tuple(sources) + (("accompaniment",) if "vocals" in sources and len(sources) > 1 else ())


def accompaniment_sources(sources=SOURCES) -> tuple[str, ...]:
    """The sources summed into ``accompaniment``, in the order they are
    summed: musdb's :data:`ACCOMPANIMENT` for MUSDB18's four (so the sum is
    musdb's to the bit), else every source but ``vocals`` in ``sources``'
    order; none when the targets have no accompaniment (:func:`targets_of`)."""
    if "accompaniment" not in targets_of(sources):
        return ()
    return ACCOMPANIMENT if sorted(sources) == sorted(SOURCES) else tuple(s for s in sources if s != "vocals")

ORACLES: tuple[str, ...] = ("mix", "irm1", "irm2", "ibm", "ibm1", "ibm2", "mwf")
"""Oracle kinds: the mixture itself as every target's estimate (``mix``, SiSEC
2018's MIX: the score of doing nothing, the floor of the share of the oracle's
improvement), ideal ratio masks on magnitudes (1) and powers (2), the ideal
binary mask (each bin to its loudest source), SiSEC 2018's ideal binary masks
IBM1 and IBM2 (a source keeps the bins where its magnitude, or power, is at
least half the mixture's), and the multichannel Wiener filter of the true
sources (see :func:`musicsep.separate.oracles.oracle`). The system an oracle
kind names in the results is :func:`oracle_system` of it."""

ORACLE_PREFIX = "oracle_"

MIXTURE_SYSTEM = ORACLE_PREFIX + "mix"
"""The system of the ``mix`` oracle: the unprocessed mixture, shown as ``mixture``."""


def oracle_system(kind: str) -> str:
    """The system name of an oracle kind in the results (``irm1`` -> ``oracle_irm1``)."""
    return ORACLE_PREFIX + kind


def system_label(system: str) -> str:
    """A system's name as tables and figures show it: ``mixture`` for
    :data:`MIXTURE_SYSTEM`, any other name as it is."""
    return "mixture" if system == MIXTURE_SYSTEM else system


SAMPLE_RATE = 44100
"""MUSDB18's sample rate (Hz): the default of the shards, the models and the toy dataset."""

N_FFT = 2048
"""STFT size (Hann window of the same length) of the models and oracles by default."""

HOP = 512
"""STFT hop in samples, by default."""

N_MELS = 300
"""Mel bands of the models' frozen projection, by default (the paper's 300)."""

LOG_EPS = 1e-6
"""Floor added to a magnitude before its logarithm (features and statistics), by default."""


class MusicsepError(Exception):
    """An error caused by input (a file, a key, an argument): shown to the user
    as one clear message, without a traceback."""
