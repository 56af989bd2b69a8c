# Separation of every test track by every experiment and by the oracles, one
# job per (system, track); museval (BSS Eval v4) per (system, track); and the
# aggregate tables.

TARGETS = ["vocals", "drums", "bass", "other", "accompaniment"]
ORACLES = [f"oracle_{kind}" for kind in config["evaluation"]["oracles"]]
SYSTEMS = list(SPECS) + ORACLES
ESTIMATES = f"{RESULTS}/estimates/{{system}}/{{slug}}"


wildcard_constraints:
    system="[A-Za-z0-9][A-Za-z0-9_-]*",
    kind="|".join(ORACLE_KINDS),


rule separate:
    wildcard_constraints:
        system="|".join(re.escape(name) for name in SPECS),
    input:
        shard=SHARD,
        model=f"{RESULTS}/models/{{system}}/model.pt",
    output:
        expand(f"{ESTIMATES}/{{target}}.wav", target=TARGETS, allow_missing=True),
    params:
        out=lambda wc, output: os.path.dirname(output[0]),
        wiener="--wiener" if config["evaluation"]["wiener"] else "",
        chunk=config["evaluation"]["chunk_seconds"],
        context=config["evaluation"]["context_seconds"],
        batch=config["evaluation"]["batch_chunks"],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/separate/{{system}}/{{slug}}.log",
    shell:
        "python -m musicsep separate {input.shard:q} --shard --model {input.model:q} "
        "--out {params.out:q} --chunk-seconds {params.chunk} --context-seconds {params.context} "
        "--batch-chunks {params.batch} {params.wiener} 2> {log:q}"


rule oracle:
    input:
        shard=SHARD,
    output:
        expand(f"{RESULTS}/estimates/oracle_{{kind}}/{{slug}}/{{target}}.wav", target=TARGETS, allow_missing=True),
    params:
        out=lambda wc, output: os.path.dirname(output[0]),
        n_fft=config["features"]["n_fft"],
        hop=config["features"]["hop"],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/oracle/{{kind}}/{{slug}}.log",
    shell:
        "python -m musicsep separate {input.shard:q} --shard --oracle {wildcards.kind} "
        "--n-fft {params.n_fft} --hop {params.hop} --out {params.out:q} 2> {log:q}"


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
