# Parse-time helpers: the config and its checks, the track table, input functions.
import json
import os
import re
import sys

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import DeploymentMethod

try:
    from musicsep import ORACLES, MusicsepError, oracle_system, targets_of
    from musicsep.evaluate import ordered_targets
    from musicsep.models.registry import MODELS
    from musicsep.report import EXCERPT_SECONDS
    from musicsep.workflow.check import WORKFLOW_CONFIGFILE, check_workflow, read_source
    from musicsep.workflow.grid import seed_groups
    from musicsep.workflow.plan import check_container, use_this_python
except ImportError as err:
    raise WorkflowError(
        f"the musicsep package cannot be imported ({err}); run `make setup` "
        "and use .venv/bin/snakemake, or install it with `pip install -e .`"
    )


def config_error(err):
    """A bad config: its problems, one line each naming the config file and
    key, and exit status 1 (a WorkflowError would point at this file)."""
    print(err, file=sys.stderr)
    sys.exit(1)


# The workflow's config file (config/config.yaml of the working directory;
# every --configfile and --config go over it), read by us first so that a YAML
# error names its line. Files given with --configfile Snakemake reads before
# this file runs: `musicsep check-config FILE` names the line of theirs.
if os.path.exists(WORKFLOW_CONFIGFILE):
    try:
        read_source(WORKFLOW_CONFIGFILE)
    except MusicsepError as err:
        config_error(err)


configfile: WORKFLOW_CONFIGFILE


# the checks `musicsep check-config` makes: schema, experiments, dataset
try:
    CHECKED = check_workflow(workflow, config)
except MusicsepError as err:
    config_error(err)
config.update(CHECKED.config)
PLAN, SPECS = CHECKED.plan, CHECKED.specs
# what separation writes and evaluation scores ({target}.wav): the dataset's sources and, with
# vocals, the accompaniment, in the tables' order (MUSDB18's: musicsep.TARGETS)
TARGETS = tuple(ordered_targets(targets_of(PLAN.sources)))
# experiments that differ only by training.seed: summarised together (mean and spread)
SEED_GROUPS = seed_groups(SPECS)
# checked now, reported as an error when jobs are about to run (onstart),
# so that a dry run works before the image is built
CONTAINER_PROBLEM = check_container(
    config["container"], DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method,
    strict=False,
)

if CONTAINER_PROBLEM:
    print(f"warning: {CONTAINER_PROBLEM}", file=sys.stderr)


onstart:
    if CONTAINER_PROBLEM:
        raise WorkflowError(CONTAINER_PROBLEM)


use_this_python(workflow.basedir)

RESULTS = config["results"]
TRACKS = PLAN.tracks
SHARD = f"{RESULTS}/data/shards/{{slug}}.h5"
ENV = "../envs/musicsep.yaml"


wildcard_constraints:
    slug="[a-z0-9_]+",
    exp="[A-Za-z0-9][A-Za-z0-9_-]*",


ORACLE_SYSTEMS = [oracle_system(kind) for kind in config["evaluation"]["oracles"]]
SYSTEMS = list(SPECS) + ORACLE_SYSTEMS
ESTIMATES = f"{RESULTS}/estimates/{{system}}/{{slug}}"


def shards(*splits):
    """Shard paths of the tracks in the given splits (all when none given)."""
    return expand(SHARD, slug=PLAN.slugs(*splits))


def shard_inputs(wildcards):
    return PLAN.inputs(wildcards.slug)


def spec_json(wildcards):
    """The experiment's training spec: a rule parameter, so a changed block retrains."""
    return json.dumps(SPECS[wildcards.exp], sort_keys=True)


def track(wildcards, column):
    return TRACKS.loc[wildcards.slug, column]
