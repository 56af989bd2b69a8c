"""Separation: a trained model (:mod:`.separator`) or an oracle (:mod:`.oracles`)
turns mixtures into sources. The defaults below are shared with the command
line and the config, and imported from here without torch."""

CHUNK_SECONDS = 30.0
"""Output seconds per chunk by default: memory is bounded by the chunk, not the track."""

BATCH_CHUNKS = 6
"""Chunks stacked into one model call at most, by default: a 3-minute track
(6 chunks of 30 s) in one call of 12 sequences, which a BLSTM runs about 10%
faster per frame than two calls of 6 on a 2-core CPU."""


CONTEXT_SECONDS = 1.0
"""Context on each side of a chunk, by default. Two trained BLSTM mask
models (the toy run's, and one of paper size trained for 1,500 steps of 20
excerpts on a GPU) give the same estimates in chunks as whole to float32
rounding from 1 s of context on (``benchmarks/bench_context.py``, 4 s
chunks on toy test tracks: 34 and 46 dB without context, 112 and 138 dB with
0.5 s, 148 and 145 dB with 1 s); 1 s leaves a margin and costs
a 3-minute track in 30 s chunks 5.6% more model frames, 2 s 11.2%. A model
that carries context further (a model trained on real music for longer may:
measure it with that script) can be given more: ``context_seconds``,
``evaluation.context_seconds``, ``--context-seconds``."""
