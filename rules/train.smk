# Training: one job per experiment, on every device the job is given (the
# profiles declare GPUs, nodes and other resources; the rule names none). Checkpoints
# live in {results}/runs/{exp}, outside the declared outputs, so a failed or
# killed job resumes where it stopped.

# scripts/per-task.sh (in the shell command below) is found on PATH, in a job too.
envvars:
    "PATH",


SCRIPTS = os.path.join(workflow.basedir, "scripts")
if os.environ.get("PATH", "").split(os.pathsep)[0] != SCRIPTS:
    os.environ["PATH"] = os.pathsep.join([SCRIPTS, os.environ.get("PATH", "")])


rule train:
    # trainings first (the priorities: rules/evaluate.smk)
    priority: 50
    input:
        tracks=rules.tracks.output[0],
        stats=rules.stats.output[0],
        shards=shards("train", "valid"),
    output:
        model=f"{RESULTS}/models/{{exp}}/model.pt",
        metrics=f"{RESULTS}/models/{{exp}}/metrics.jsonl",
    params:
        spec=spec_json,
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.exp}",
    conda:
        ENV
    log:
        f"{RESULTS}/logs/train/{{exp}}.log",
    shell:
        # In the batch shell of a SLURM job of several tasks (profiles/slurm-multinode)
        # scripts/per-task.sh starts one training process per task with srun; each
        # takes its rank from SLURM's environment. Otherwise it runs the command as
        # it is, and one process uses every GPU it sees.
        "per-task.sh python -m musicsep train --spec {params.spec:q} --tracks {input.tracks:q} "
        "--shards {input.shards:q} --stats {input.stats:q} --run-dir {params.run_dir:q} "
        "--out {output.model:q} --metrics {output.metrics:q} 2> {log:q}"
