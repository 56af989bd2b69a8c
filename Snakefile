# musicsep: music source separation on MUSDB18, from the dataset to reports.
# This file is the table of contents; helpers live in rules/common.smk and the
# work in the musicsep package (src/musicsep), which every rule calls.


# first: the configfile (config/config.yaml) and its checks
include: "rules/common.smk"


# Under --sdm apptainer every rule runs in this image (config key `container`;
# built from containers/musicsep.def or containers/Dockerfile).
container: config["container"]


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/separate.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        data_summary=f"{RESULTS}/data/summary.md",
        models=expand(f"{RESULTS}/models/{{exp}}/model.pt", exp=SPECS),
        summary=f"{RESULTS}/summary.md",
        plots=REPORT_FILES,
    default_target: True
