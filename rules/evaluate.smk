# Evaluation: museval (BSS Eval v4) per (system, track), and the aggregate tables (with the published
# results of evaluation.published beside ours).
#
# Job priorities (`priority:`; a free core goes to the ready job of the highest):
# 50 train; 40 evaluate of a trained model; 30 separate and the data rules
# (toy_musdb, shard, tracks, stats, data_summary); 0 the rest: the oracles and
# their evaluation, aggregate, the figures. So the trainings start as soon as
# their data are there, and a model's scores come before the oracles'.


rule evaluate:
    priority: lambda wc: 40 if wc.system in SPECS else 0
    input:
        shard=SHARD,
        estimates=expand(f"{ESTIMATES}/{{target}}.wav", target=TARGETS, allow_missing=True),
    output:
        f"{RESULTS}/scores/{{system}}/{{slug}}.json",
    params:
        estimates=lambda wc, input: os.path.dirname(input.estimates[0]),
        engine=config["evaluation"]["engine"],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/evaluate/{{system}}/{{slug}}.log",
    # as many BLAS and FFT threads as the job's threads (1 unless a profile
    # sets more): multithreaded BLAS was erratic on an oversubscribed node
    shell:
        "OMP_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "python -m musicsep evaluate --shard {input.shard:q} --estimates {params.estimates:q} "
        "--out {output:q} --engine {params.engine} --threads {threads} 2> {log:q}"


rule aggregate:
    input:
        scores=expand(f"{RESULTS}/scores/{{system}}/{{slug}}.json", system=SYSTEMS, slug=PLAN.slugs("test")),
        tracks=rules.tracks.output[0],
    output:
        scores=f"{RESULTS}/scores.csv",
        summary=f"{RESULTS}/summary.md",
        medians=f"{RESULTS}/medians.csv",
    params:
        # published results beside ours (evaluation.published: built-in names, SiSEC 2018 files or folders)
        published=config["evaluation"]["published"],
        published_option="--published" if config["evaluation"]["published"] else "",
        seeds=" ".join(f"--seeds {name}={','.join(members)}" for name, members in SEED_GROUPS.items()),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/aggregate.log",
    shell:
        "python -m musicsep aggregate {input.scores:q} --tracks {input.tracks:q} "
        "--out {output.scores:q} --summary {output.summary:q} --medians {output.medians:q} "
        "{params.seeds} {params.published_option} {params.published:q} 2> {log:q}"
