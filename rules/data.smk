# Data: the toy MUSDB (when no dataset is configured), one shard per track,
# the written track table, whitening statistics and a short summary.
# A dataset laid out as stems (dataset.layout: stems, or a toy of other
# sources than MUSDB18's) has its own toy and shard rules: the MUSDB18 ones
# stay as they were, so that their outputs stay current.

from musicsep.data import SHARD_FORMAT


if PLAN.is_toy and PLAN.layout is None:

    rule toy_musdb:
        priority: 30
        output:
            PLAN.dataset,
        params:
            seed=config["dataset"]["toy"]["seed"],
            train=config["dataset"]["toy"]["train_tracks"],
            test=config["dataset"]["toy"]["test_tracks"],
            duration=config["dataset"]["toy"]["duration"],
            hq="--hq" if config["dataset"]["toy"]["format"] == "hq" else "",
        conda:
            ENV
        log:
            f"{RESULTS}/logs/data/toy_musdb.log",
        shell:
            "python -m musicsep make-toy-musdb {output:q} --seed {params.seed} "
            "--train {params.train} --test {params.test} --duration {params.duration} "
            "{params.hq} --jobs {threads} 2> {log:q}"

elif PLAN.is_toy:

    rule toy_stems:
        priority: 30
        output:
            PLAN.dataset,
        params:
            seed=config["dataset"]["toy"]["seed"],
            train=config["dataset"]["toy"]["train_tracks"],
            test=config["dataset"]["toy"]["test_tracks"],
            duration=config["dataset"]["toy"]["duration"],
            format=f"--{config['dataset']['toy']['format']}",
            sources=" ".join(PLAN.sources),
        conda:
            ENV
        log:
            f"{RESULTS}/logs/data/toy_stems.log",
        shell:
            "python -m musicsep make-toy-musdb {output:q} --seed {params.seed} "
            "--train {params.train} --test {params.test} --duration {params.duration} "
            "{params.format} --sources {params.sources} --jobs {threads} 2> {log:q}"


if PLAN.layout:

    rule shard:
        priority: 30
        input:
            shard_inputs,
        output:
            SHARD,
        params:
            dataset=PLAN.dataset,
            member=lambda wc: track(wc, "member"),
            split=lambda wc: track(wc, "split"),
            layout=PLAN.layout,
            sample_rate=config["data"]["sample_rate"],
            chunk=config["data"]["chunk_seconds"],
            silence=config["data"]["silence_db"],
            mono="--mono" if config["data"]["mono"] else "",
            format=SHARD_FORMAT,
        conda:
            ENV
        log:
            f"{RESULTS}/logs/data/shard/{{slug}}.log",
        shell:
            "python -m musicsep shard {params.dataset:q} {params.member:q} --layout {params.layout:q} "
            "--out {output:q} --split {params.split} --slug {wildcards.slug} --sample-rate {params.sample_rate} "
            "--chunk-seconds {params.chunk} --silence-db {params.silence} {params.mono} 2> {log:q}"

else:

    rule shard:
        priority: 30
        input:
            shard_inputs,
        output:
            SHARD,
        params:
            dataset=PLAN.dataset,
            member=lambda wc: track(wc, "member"),
            split=lambda wc: track(wc, "split"),
            sample_rate=config["data"]["sample_rate"],
            chunk=config["data"]["chunk_seconds"],
            silence=config["data"]["silence_db"],
            mono="--mono" if config["data"]["mono"] else "",
            # a param, unused by the command: a shard of an older format reruns (params changed)
            format=SHARD_FORMAT,
        conda:
            ENV
        log:
            f"{RESULTS}/logs/data/shard/{{slug}}.log",
        shell:
            "python -m musicsep shard {params.dataset:q} {params.member:q} --out {output:q} "
            "--split {params.split} --slug {wildcards.slug} --sample-rate {params.sample_rate} "
            "--chunk-seconds {params.chunk} --silence-db {params.silence} {params.mono} 2> {log:q}"


rule tracks:
    priority: 30
    input:
        shards(),
    output:
        f"{RESULTS}/data/tracks.tsv",
    conda:
        ENV
    log:
        f"{RESULTS}/logs/data/tracks.log",
    shell:
        "python -m musicsep tracks {input:q} --out {output:q} 2> {log:q}"


rule stats:
    priority: 30
    input:
        shards("train"),
    output:
        f"{RESULTS}/data/stats.h5",
    params:
        n_fft=config["features"]["n_fft"],
        hop=config["features"]["hop"],
        log_eps=config["features"]["log_eps"],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/data/stats.log",
    shell:
        "python -m musicsep stats {input:q} --out {output:q} --n-fft {params.n_fft} "
        "--hop {params.hop} --log-eps {params.log_eps} 2> {log:q}"


rule data_summary:
    priority: 30
    input:
        tracks=rules.tracks.output[0],
        stats=rules.stats.output[0],
    output:
        f"{RESULTS}/data/summary.md",
    conda:
        ENV
    log:
        f"{RESULTS}/logs/data/summary.log",
    shell:
        "python -m musicsep summary --tracks {input.tracks:q} --stats {input.stats:q} "
        "--out {output:q} > {log:q} 2>&1"
