# The two commands of the README:
#   make run    set up (once), then run the workflow on the built-in toy MUSDB
#   make test   set up (once), then run the test suite
VENV ?= .venv
PROFILE ?= profiles/default
SNAKEMAKE_ARGS ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test setup dry-run report clean

$(VENV)/.installed: pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

setup: $(VENV)/.installed

run: $(VENV)/.installed
	snakemake --profile $(PROFILE) --configfile config/config.yaml config/toy.yaml $(SNAKEMAKE_ARGS)
	@cat results/data/summary.md results/summary.md

test: $(VENV)/.installed
	python -m pytest

report: $(VENV)/.installed
	snakemake --profile $(PROFILE) --configfile config/config.yaml config/toy.yaml --report report.html

dry-run: $(VENV)/.installed
	snakemake --profile $(PROFILE) -n $(SNAKEMAKE_ARGS)

clean:
	rm -rf results .snakemake
