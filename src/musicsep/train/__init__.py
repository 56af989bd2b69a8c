"""Training: the loop (:mod:`.loop`), processes and devices (:mod:`.distributed`),
run folders (:mod:`.runs`) and validation (:mod:`.validation`).

This module itself imports nothing heavy: the command line takes the stop
status from here without loading torch."""

from musicsep import MusicsepError

STOPPED_EXIT = 3
"""Exit status of a training process stopped by a signal after saving ``latest.pt``."""


class Stopped(MusicsepError):
    """Training stopped by a signal after saving ``latest.pt``."""
