# Report: the figures, tables and audio pages of `snakemake --report report.html`
# (Snakemake's HTML report), made by `musicsep plots` from the results above.
# Every output here is flagged with report(...), its caption in report/.
# REPORT_FILES lists them all (rule all takes them; `snakemake plots` makes them).
# The excerpt of the masks, embeddings and audio is one window of the first
# test track (the first by name), chosen the same way by each job.

report: "../report/workflow.rst"


PLOTS = f"{RESULTS}/plots"
FIRST_TEST = next(iter(PLAN.tracks[PLAN.tracks["split"] == "test"].sort_values("name").index), None)
EMBEDDING_EXPS = [exp for exp, spec in SPECS.items() if "embeddings" in MODELS[spec["model"]].plots]
SCORE_PLOTS = {
    "table": f"{PLOTS}/summary.html",
    "medians": f"{PLOTS}/scores/track_medians.csv",
    "box": f"{PLOTS}/scores/sdr_boxplots.svg",
    "heatmap": f"{PLOTS}/scores/sdr_heatmap.svg",
}
TRAINING_PLOT = f"{PLOTS}/training/{{exp}}.svg"
LEARNING_CURVES = f"{PLOTS}/learning_curves.svg"
MASKS_PLOT = f"{PLOTS}/masks/{{exp}}.png"
EMBEDDINGS_PLOT = f"{PLOTS}/embeddings/{{exp}}.png"
AUDIO_PAGE = f"{PLOTS}/audio/{{slug}}/{{system}}.html"
AUDIO_CLIPS = f"{PLOTS}/audio/{{slug}}/{{system}}"


rule plot_scores:
    input:
        scores=f"{RESULTS}/scores.csv",
        summary=report(f"{RESULTS}/summary.md", caption="../report/summary_md.rst", category="1. Evaluation",
                       subcategory="Tables", labels={"result": "summary.md (Markdown)"}),
    output:
        table=report(SCORE_PLOTS["table"], caption="../report/summary.rst", category="1. Evaluation",
                     subcategory="Tables", labels={"result": "summary tables"}),
        medians=report(SCORE_PLOTS["medians"], caption="../report/track_medians.rst",
                       category="1. Evaluation", subcategory="Tables", labels={"result": "per-track medians (CSV)"}),
        box=report(SCORE_PLOTS["box"], caption="../report/sdr_boxplots.rst",
                   category="1. Evaluation", subcategory="Figures", labels={"figure": "SDR box plots"}),
        heatmap=report(SCORE_PLOTS["heatmap"], caption="../report/sdr_heatmap.rst",
                       category="1. Evaluation", subcategory="Figures", labels={"figure": "SDR per track"}),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/plots/scores.log",
    shell:
        "python -m musicsep plots scores {input.scores:q} --summary {input.summary:q} --table {output.table:q} "
        "--medians {output.medians:q} --box {output.box:q} --heatmap {output.heatmap:q} 2> {log:q}"


rule plot_training:
    input:
        f"{RESULTS}/models/{{exp}}/metrics.jsonl",
    output:
        report(TRAINING_PLOT, caption="../report/training.rst", category="2. Training",
               labels={"experiment": "{exp}"}),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/plots/training/{{exp}}.log",
    shell:
        "python -m musicsep plots training {input:q} --name {wildcards.exp} --out {output:q} 2> {log:q}"


rule plot_learning_curves:
    input:
        expand(f"{RESULTS}/models/{{exp}}/metrics.jsonl", exp=SPECS),
    output:
        report(LEARNING_CURVES, caption="../report/learning_curves.rst", category="2. Training",
               labels={"experiment": "all (learning curves)"}),
    params:
        names=list(SPECS),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/plots/learning_curves.log",
    shell:
        "python -m musicsep plots learning-curves {input:q} --names {params.names:q} --out {output:q} 2> {log:q}"


rule plot_masks:
    input:
        shard=expand(SHARD, slug=FIRST_TEST),
        model=f"{RESULTS}/models/{{exp}}/model.pt",
    output:
        report(MASKS_PLOT, caption="../report/masks.rst", category="3. Masks",
               labels={"experiment": "{exp}"}),
    params:
        seconds=EXCERPT_SECONDS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/plots/masks/{{exp}}.log",
    shell:
        "python -m musicsep plots masks --model {input.model:q} --shard {input.shard:q} "
        "--seconds {params.seconds} --name {wildcards.exp} --out {output:q} 2> {log:q}"


rule plot_embeddings:
    wildcard_constraints:
        exp="|".join(re.escape(exp) for exp in EMBEDDING_EXPS) or "(?!)",
    input:
        shard=expand(SHARD, slug=FIRST_TEST),
        model=f"{RESULTS}/models/{{exp}}/model.pt",
    output:
        report(EMBEDDINGS_PLOT, caption="../report/embeddings.rst", category="4. Embeddings",
               labels={"experiment": "{exp}"}),
    params:
        seconds=EXCERPT_SECONDS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/plots/embeddings/{{exp}}.log",
    shell:
        "python -m musicsep plots embeddings --model {input.model:q} --shard {input.shard:q} "
        "--seconds {params.seconds} --name {wildcards.exp} --out {output:q} 2> {log:q}"


rule audio_example:
    wildcard_constraints:
        system="|".join(re.escape(name) for name in SYSTEMS),
    input:
        shard=SHARD,
        estimates=expand(f"{ESTIMATES}/{{target}}.wav", target=TARGETS, allow_missing=True),
    output:
        page=report(AUDIO_PAGE, caption="../report/audio.rst", category="5. Audio examples",
                    labels={"system": "{system}"}),
        clips=expand(f"{AUDIO_CLIPS}/{{target}}.wav", target=TARGETS, allow_missing=True),
    params:
        estimates=lambda wc, input: os.path.dirname(input.estimates[0]),
        out_dir=lambda wc, output: os.path.dirname(output.clips[0]),
        seconds=EXCERPT_SECONDS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/plots/audio/{{slug}}/{{system}}.log",
    shell:
        "python -m musicsep plots audio --shard {input.shard:q} --estimates {params.estimates:q} "
        "--name {wildcards.system} --out-dir {params.out_dir:q} --page {output.page:q} "
        "--seconds {params.seconds} 2> {log:q}"


rule audio_reference:
    input:
        shard=SHARD,
    output:
        page=report(AUDIO_PAGE.replace("{system}", "reference"), caption="../report/audio_reference.rst",
                    category="5. Audio examples", labels={"system": "reference (true sources)"}),
        clips=expand(f"{AUDIO_CLIPS}/{{target}}.wav", system="reference", target=["mixture", *TARGETS],
                     allow_missing=True),
    params:
        out_dir=lambda wc, output: os.path.dirname(output.clips[0]),
        seconds=EXCERPT_SECONDS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/plots/audio/{{slug}}/reference.log",
    shell:
        "python -m musicsep plots audio --shard {input.shard:q} --out-dir {params.out_dir:q} "
        "--page {output.page:q} --seconds {params.seconds} 2> {log:q}"


REPORT_FILES = [
    *SCORE_PLOTS.values(),
    *expand(TRAINING_PLOT, exp=SPECS),
    LEARNING_CURVES,
    *(expand(MASKS_PLOT, exp=SPECS) if FIRST_TEST else []),
    *(expand(EMBEDDINGS_PLOT, exp=EMBEDDING_EXPS) if FIRST_TEST else []),
    *(expand(AUDIO_PAGE, slug=FIRST_TEST, system=["reference", *SYSTEMS]) if FIRST_TEST else []),
]


rule plots:
    input:
        REPORT_FILES,
