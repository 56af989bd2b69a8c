"""Separation: a trained model (:mod:`.separator`) or an oracle (:mod:`.oracles`)
turns mixtures into sources. The defaults below are shared with the command
line and the config, and imported from here without torch."""

CHUNK_SECONDS = 30.0
"""Output seconds per chunk by default: memory is bounded by the chunk, not the track."""

BATCH_CHUNKS = 6
"""Chunks stacked into one model call at most, by default: a 3-minute track
(6 chunks of 30 s) runs in one call of 12 sequences, as a BLSTM runs faster
per frame on a larger batch of sequences; memory grows with the batch (both:
``benchmarks/RESULTS.md``, batched chunks)."""


CONTEXT_SECONDS = 1.0
"""Context on each side of a chunk, by default: the context from which the
trained BLSTM mask models measured so far (the toy run's, and one of paper
size trained on a GPU) give the same estimates in chunks as whole, to float32
rounding; less falls short of that, and more costs model frames without
changing the estimates (the figures per context length:
``benchmarks/RESULTS.md``, context). A model that carries context further
(a model trained on real music for longer may: measure it with
``benchmarks/bench_context.py``) can be given more: ``context_seconds``,
``evaluation.context_seconds``, ``--context-seconds``."""


FORMATS = {
    "wav-f32": ("WAV", "FLOAT", ".wav"),
    "wav-16": ("WAV", "PCM_16", ".wav"),
    "wav-24": ("WAV", "PCM_24", ".wav"),
    "flac-16": ("FLAC", "PCM_16", ".flac"),
    "flac-24": ("FLAC", "PCM_24", ".flac"),
}
"""The stems' file formats: name -> (soundfile format, subtype, extension).
``wav-f32`` (32-bit float WAV, the estimates as computed) is the default and
what the workflow's evaluation reads; the others are rounded to 16 or 24
bits, clipped at full scale (:mod:`musicsep.separate.stems`)."""

DEFAULT_FORMAT = "wav-f32"
