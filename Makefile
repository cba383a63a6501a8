# Entry points for a fresh clone: `make study` (environment + the whole study), `make test` (environment,
# lint, the test suite; what CI runs), `make test-fast` (the same without the tests marked slow: the quick
# loop while editing). The environment is built once, again only when requirements.txt changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: env study test test-fast lint predict search plots-template

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# Checks that every model can start, runs `dvc repro --keep-going`, makes the report of what ran and ends
# with a summary (exit 1 if any stage could not run). BUSI_SOURCE=/path/to/Dataset_BUSI_with_GT.zip make study
# uses a local copy of the data set instead of the download.
study: env
	$(RUN) python -m bcmodels.study

lint: env
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

# pytest.mark.slow (pyproject.toml): whole `dvc repro` runs, the real archive, torch.compile, training runs
# and subprocesses of more than about 2 s. The rest takes about a minute of CPU time.
test-fast: lint
	$(BIN)/python -m pytest -m "not slow"

# Classify the study split's test images with the main run's checkpoints (data/checkpoints, from `make study`)
# and draw where each model looked: predictions/predictions.csv and predictions/gradcam/contact_sheet.png.
PREDICT_MODELS ?= mobilenet_v2
predict: env
	awk -F, '$$3 == "test" {print "data/raw/Dataset_BUSI_with_GT/" $$1}' data/split.csv \
	| xargs -d '\n' $(BIN)/python -m bcmodels.predict --model $(PREDICT_MODELS) --explain --out predictions

# Try a recipe of the benchmark's model on the validation folds only, as a DVC experiment (docs/search.md):
# crossval/search/$(RECIPE)/overrides.txt holds the params.yaml settings it changes, one key=value a line. Then
# `dvc repro crossval/dvc.yaml:summarize_search` compares the recipes tried (crossval/search.md). SEEDS="1 2" runs
# other training seeds than crossval.seeds.
search: env
	@test -n "$(RECIPE)" || { echo "usage: make search RECIPE=<name> (crossval/search/<name>/overrides.txt)"; exit 2; }
	$(RUN) python -m bcmodels.search $(RECIPE) $(if $(SEEDS),--seeds $(SEEDS))

# Rebuild .dvc/plots/offline_page.html, the page `dvc plots show` and `dvc plots diff` write, with Vega,
# Vega-Lite and Vega-Embed inlined from the npm registry (versions pinned in the script), so the plots
# render offline. Needs npm; the generated page and vendor/ licences are committed.
plots-template:
	$(PYTHON) .dvc/plots/build_offline_template.py
