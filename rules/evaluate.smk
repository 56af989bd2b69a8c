# Evaluation: museval (BSS Eval v4) per (system, track), and the aggregate tables.


rule evaluate:
    input:
        shard=SHARD,
        estimates=expand(f"{ESTIMATES}/{{target}}.wav", target=TARGETS, allow_missing=True),
    output:
        f"{RESULTS}/scores/{{system}}/{{slug}}.json",
    params:
        estimates=lambda wc, input: os.path.dirname(input.estimates[0]),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/evaluate/{{system}}/{{slug}}.log",
    shell:
        "python -m musicsep evaluate --shard {input.shard:q} --estimates {params.estimates:q} "
        "--out {output:q} 2> {log:q}"


rule aggregate:
    input:
        scores=expand(f"{RESULTS}/scores/{{system}}/{{slug}}.json", system=SYSTEMS, slug=PLAN.slugs("test")),
        tracks=rules.tracks.output[0],
    output:
        scores=f"{RESULTS}/scores.csv",
        summary=f"{RESULTS}/summary.md",
    conda:
        ENV
    log:
        f"{RESULTS}/logs/aggregate.log",
    shell:
        "python -m musicsep aggregate {input.scores:q} --tracks {input.tracks:q} "
        "--out {output.scores:q} --summary {output.summary:q} 2> {log:q}"
