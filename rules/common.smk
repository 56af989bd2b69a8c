# Parse-time helpers: config validation, the track table, input functions.
from snakemake.exceptions import WorkflowError

try:
    from musicsep import MusicsepError
    from musicsep.workflow import load_config, plan, use_this_python
except ImportError as err:
    raise WorkflowError(
        f"the musicsep package cannot be imported ({err}); run `make setup` "
        "and use .venv/bin/snakemake, or install it with `pip install -e .`"
    )

try:
    config.update(load_config(config, workflow.basedir))
    PLAN = plan(config)
except MusicsepError as err:
    raise WorkflowError(str(err))

use_this_python(workflow.basedir)

RESULTS = config["results"]
TRACKS = PLAN.tracks
SHARD = f"{RESULTS}/data/shards/{{slug}}.h5"
ENV = "../envs/musicsep.yaml"


wildcard_constraints:
    slug="[a-z0-9_]+",


def shards(*splits):
    """Shard paths of the tracks in the given splits (all when none given)."""
    return expand(SHARD, slug=PLAN.slugs(*splits))


def shard_inputs(wildcards):
    return PLAN.inputs(wildcards.slug)


def track(wildcards, column):
    return TRACKS.loc[wildcards.slug, column]
