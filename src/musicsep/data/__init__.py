"""Data on disk: datasets, ffmpeg, the shard format, the track table, training excerpts.

Defaults shared by the command line and the config schema live here."""

SHARD_CHUNK_SECONDS = 1.0
"""HDF5 chunk length of a shard: one chunk per stream, so a few-second excerpt touches a few chunks."""

SHARD_FORMAT = 2
"""The shard format's version, stored in every shard (``format_version``) and
in the shard rule's params, so that Snakemake rebuilds shards of an older
format. 2: stems decoded to 16-bit samples as musdb decodes them, and the
references at the source rate in stereo (1, never recorded: float-decoded
AAC, references at the model's rate and channels)."""

SILENCE_DB = -60.0
"""A source whose RMS over the whole track lies below this level (dBFS) is flagged silent."""

VALID_FRACTION, VALID_SEED = 0.15, 0
"""Share of training tracks held out for validation when MUSDB18's official names are absent, and its seed."""

DATASET_SOURCES: list[str] = ["drums", "bass", "other", "vocals"]
"""The default of ``dataset.sources``: MUSDB18's four, in :data:`musicsep.SOURCES` order (a test checks they agree)."""
