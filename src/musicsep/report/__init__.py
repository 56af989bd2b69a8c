"""Figures, tables and audio pages of the workflow's HTML report.

``snakemake --report report.html`` (Snakemake's own HTML report) shows the
files that rules/report.smk flags with ``report(...)``; this package makes them
from the workflow's results, one module per kind, each called by
``python -m musicsep plots KIND``:

- :func:`.scores.plot_scores`: the summary tables (``summary.md`` rendered as an HTML
  page), per-track median scores as a small CSV, SDR box plots per target and
  system, and a per-track SDR heat map (track × system, one panel per target);
- :func:`.training.plot_training`: train and validation loss (and the loss parts and
  learning rate) per epoch, from an experiment's ``metrics.jsonl``;
- :func:`.masks.plot_masks`: for one excerpt of one track, the mixture's log
  spectrogram, a model's masks per source and the ideal ratio masks of the
  true sources;
- :func:`.embeddings.plot_embeddings`: for the embedding models, a 2-D PCA of the
  embeddings of that excerpt, points coloured by their true dominant source
  and by the model's assignment;
- :func:`.audio.audio_examples`: short WAV excerpts of one system's estimates (or of
  the mixture and true sources) and an HTML page of audio players with the
  audio embedded: the report shows HTML pages inline, but offers other
  files, WAV included, only as downloads.

Snakemake's report shows an HTML result in a frame from a base64 data URL;
Chrome has refused such URLs over 2 MB, so each audio page holds one system's
clips, as MP3, and stays under :data:`PAGE_LIMIT` for a 10 s excerpt.

The excerpt (:func:`.excerpt.read_excerpt`) is the same for the figures and the audio:
by default the window of the track where the four sources are loudest
together (the largest mean over sources of their log energy), found from 1 s
blocks of the shard.

Figures use matplotlib's Agg backend: SVG for plots, PNG for spectrograms.
"""

EXCERPT_SECONDS = 10.0
"""Length of the excerpt every figure and audio page shows, by default."""

EMBEDDING_POINTS = 3000
"""Points drawn in an embedding figure, by default."""
