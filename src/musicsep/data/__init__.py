"""Data on disk: datasets, ffmpeg, the shard format, the track table, training excerpts."""
