# The commands of the README:
#   make run      set up (once), then run the workflow on the built-in toy MUSDB
#   make report   then report.html, the run's HTML report
#   make test     set up (once), then run the test suite
VENV ?= .venv
PROFILE ?= profiles/default
# The run of make run, report, dry-run and dag: the toy run. The paper-size
# experiments (GPUs): make run CONFIG=config/config.yaml
# (CONFIG and REPORT are set here, not taken from the environment: make CONFIG=...)
CONFIG = config/config.yaml config/toy.yaml
REPORT = report.html
SNAKEMAKE_ARGS ?=
RESULTS ?= results
DAG_DIR ?= $(RESULTS)/dag
TENSORBOARD_PORT ?= 6006
NOTEBOOK_PORT ?= 8888
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test test-fast setup dry-run report clean dag tensorboard notebook quality quality-compare

$(VENV)/.installed: pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

setup: $(VENV)/.installed

# SNAKEMAKE_ARGS before --configfile, which would take a target after it for a file
SNAKEMAKE = snakemake --profile $(PROFILE) $(SNAKEMAKE_ARGS) --configfile $(CONFIG)

run: $(VENV)/.installed
	$(SNAKEMAKE)
	@cat results/data/summary.md results/summary.md

test: $(VENV)/.installed
	python -m pytest

# The quality benchmark (not part of make test): a larger toy MUSDB, the three
# experiments and open-unmix trained long enough to learn, within 45 minutes on
# 2 CPU cores (config/quality.yaml; results in results/quality/). Then
# quality-compare adds the paper's comparison over 3 seeds and the ablation on
# the same data (config/quality-compare.yaml).
QUALITY = snakemake --profile $(PROFILE) $(SNAKEMAKE_ARGS) --configfile config/config.yaml config/quality.yaml
quality: $(VENV)/.installed
	$(QUALITY)
	@cat results/quality/summary.md

quality-compare: $(VENV)/.installed
	$(QUALITY) config/quality-compare.yaml
	@cat results/quality/summary.md

# The fast lane: every test but those marked slow (`make test` runs them all).
test-fast: $(VENV)/.installed
	python -m pytest -m "not slow"

# The HTML report of a finished run (snakemake --report; after make run).
report: $(VENV)/.installed
	$(SNAKEMAKE) --report $(REPORT)
	@echo "$(REPORT): open it in a browser"

dry-run: $(VENV)/.installed
	$(SNAKEMAKE) -n

# The job DAG and the rule graph of `make run`'s workflow, from a dry run, as SVG
# (graphviz's dot, installed with apt where missing).
dag: $(VENV)/.installed
	bash scripts/need.sh dot graphviz
	mkdir -p $(DAG_DIR)
	$(SNAKEMAKE) --dag > $(DAG_DIR)/dag.dot
	$(SNAKEMAKE) --rulegraph > $(DAG_DIR)/rules.dot
	dot -Tsvg $(DAG_DIR)/dag.dot -o $(DAG_DIR)/dag.svg
	dot -Tsvg $(DAG_DIR)/rules.dot -o $(DAG_DIR)/rules.svg
	@echo "$(DAG_DIR)/dag.svg $(DAG_DIR)/rules.svg"

# Watching experiments, on this machine only (127.0.0.1; from a laptop:
# ssh -L 6006:127.0.0.1:6006 -L 8888:127.0.0.1:8888 login-node).
tensorboard: $(VENV)/.installed
	tensorboard --logdir $(RESULTS)/runs --host 127.0.0.1 --port $(TENSORBOARD_PORT)

# Jupyter (installed on demand, pinned by constraints.txt) with notebooks/results.ipynb
# on $(RESULTS)/scores.csv; it prints the address with its token.
notebook: $(VENV)/.installed
	python -c "import notebook" 2>/dev/null || python -m pip install -q -c constraints.txt notebook
	MUSICSEP_SCORES=$(abspath $(RESULTS))/scores.csv jupyter notebook notebooks/results.ipynb \
		--ip 127.0.0.1 --port $(NOTEBOOK_PORT) --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf results .snakemake
