# Separation of every test track by every experiment (rule separate) and by
# the oracles (rule oracle; `mix` copies the mixture to every target, no STFT), one job per (system, track).


wildcard_constraints:
    system="[A-Za-z0-9][A-Za-z0-9_-]*",
    kind="|".join(ORACLES),


rule separate:
    wildcard_constraints:
        system="|".join(re.escape(name) for name in SPECS),
    priority: 30
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
        expand(f"{RESULTS}/estimates/{oracle_system('{kind}')}/{{slug}}/{{target}}.wav", target=TARGETS, allow_missing=True),
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
