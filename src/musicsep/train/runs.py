"""Run folders: one per experiment, kept while its spec is the same (to resume), moved aside when it changes."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from musicsep import MusicsepError
from musicsep.io import atomic_path

log = logging.getLogger(__name__)

# Settings that change how long or how a run is watched, not what it computes:
# changing them continues the run instead of starting afresh. The spec's
# ``separation`` (how SDR validation separates) is watching too.
BUDGET_KEYS = ("epochs", "early_stop_patience", "workers", "checkpoint_minutes", "media_every", "sdr_every")


def spec_hash(spec: dict) -> str:
    trajectory = {**{k: v for k, v in spec.items() if k != "separation"},
                  "training": {k: v for k, v in spec["training"].items() if k not in BUDGET_KEYS}}
    return hashlib.sha256(json.dumps(trajectory, sort_keys=True).encode()).hexdigest()[:16]


def prepare_run_dir(run_dir: Path, spec: dict) -> None:
    """Keep a run folder of the same spec (to resume); move one of another
    spec aside (nothing is deleted)."""
    marker = run_dir / "spec.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if spec_hash(old) == spec_hash(spec):
            with atomic_path(marker) as tmp:
                tmp.write_text(json.dumps(spec, indent=2, sort_keys=True))
            return
        aside = run_dir.with_name(f"{run_dir.name}.{spec_hash(old)}")
        shutil.rmtree(aside, ignore_errors=True)
        run_dir.rename(aside)
        log.info("the experiment changed: previous run moved to %s", aside)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:      # a file there, or on its path
        raise MusicsepError(f"{run_dir}: cannot be the run folder ({err.strerror}: {err.filename})") from None
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps(spec, indent=2, sort_keys=True))
