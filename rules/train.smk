# Training: one job per experiment, on every device the job is given (the
# profiles declare GPUs, nodes and other resources; the rule names none). Checkpoints
# live in {results}/runs/{exp}, outside the declared outputs, so a failed or
# killed job resumes where it stopped.


rule train:
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
        # In a job of several SLURM tasks (profiles/slurm-multinode) srun starts
        # one training process per task; each takes its rank from SLURM's
        # environment. Otherwise one process uses every GPU it sees.
        "launch=; if [ \"${{SLURM_NTASKS:-1}}\" -gt 1 ]; then launch=\"srun --kill-on-bad-exit=1 "
        "${{SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK}}\"; fi; "
        "$launch python -m musicsep train --spec {params.spec:q} --tracks {input.tracks:q} "
        "--shards {input.shards:q} --stats {input.stats:q} --run-dir {params.run_dir:q} "
        "--out {output.model:q} --metrics {output.metrics:q} 2> {log:q}"
