# The two set-up commands of biomatch (both create .venv and install biomatch into it):
#   make run    — the main job: a dedup run on the embedded gallery (real or generated data)
#   make test   — the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The editable install maps the package's modules as they were when it ran: a module added,
# moved or removed since needs a re-install, so the stamp's name carries the module list's hash.
MODULES_HASH := $(shell find biomatch -name '*.py' -not -path '*/__pycache__/*' | LC_ALL=C sort | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(MODULES_HASH)
DATASETS ?= ../shared/datasets
DATA ?=
DPI ?= 500
OUT ?= out

.PHONY: run eval test install bench clean

install: $(STAMP)

# Re-install when the build inputs change; the editable install rebuilds native/ as needed.
$(STAMP): pyproject.toml native/CMakeLists.txt $(wildcard native/*.cpp native/*.hpp native/*.inc native/*.def)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q scikit-build-core nanobind
	$(BIN)/python -m pip install -q --no-build-isolation -e '.[test]'
	rm -f $(VENV)/.installed*
	touch $(STAMP)

# The main job: a registry deduplication run on the embedded gallery (SOCOFing from
# ../shared/datasets when present, else generated identities).
run: $(STAMP)
	$(BIN)/biomatch demo dedup --datasets $(DATASETS) --out $(OUT)/demo_dedup

# FVC protocol: all FVC2002 B sets under ../shared/datasets, else generated prints; or DATA=folder DPI=n.
eval: $(STAMP)
ifneq ($(DATA),)
	$(BIN)/biomatch evaluate fvc $(DATA) --dpi $(DPI) --out $(OUT)
else
	@if [ -d "$(DATASETS)/fvc2002" ]; then \
	  $(BIN)/biomatch evaluate fvc2002 $(DATASETS)/fvc2002 --out $(OUT); \
	else \
	  echo "no $(DATASETS)/fvc2002: evaluating generated fingerprints instead"; \
	  $(BIN)/biomatch synth fvc $(OUT)/synthetic --fingers 10 --impressions 8 --seed 1 && \
	  $(BIN)/biomatch evaluate fvc $(OUT)/synthetic --dpi 500 --out $(OUT)/synthetic-eval; \
	fi
endif

# The import contract (pyproject.toml [tool.importlinter]: layers follow the data flow), then the suite.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/peers_fvc.py

clean:
	rm -rf build $(VENV) .pytest_cache
