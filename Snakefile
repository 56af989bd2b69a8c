# musicsep: music source separation on MUSDB18, from the dataset to reports.
# This file is the table of contents; helpers live in rules/common.smk and the
# work in the musicsep package (src/musicsep), which every rule calls.

configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"


rule all:
    input:
        data_summary=f"{RESULTS}/data/summary.md",
    default_target: True
