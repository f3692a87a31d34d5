# Each target creates .venv itself when missing. torch==2.13.0 is installed first and pinned
# again next to the project: without the pin pip swaps in a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-3d demo-compare test lint bench bench-features bench-discovery clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet "$(TORCH_PIN)" -e ".[test]"
	touch $(STAMP)

SAMPLE_MODEL := sample_data/model/Dataset990_Seg4SegSample/nnUNetTrainer__nnUNetPlans__2d
SAMPLE_DATA := sample_data/Dataset990_Seg4SegSample

# the audit of the sample model finds the planted subgroup; --exit-zero: the demo reports, it does not gate
demo: $(STAMP)
	$(BIN)/seg4seg audit --model $(SAMPLE_MODEL) --data $(SAMPLE_DATA) --out seg4seg_out \
		--metadata sample_data/metadata.csv --fail-gap 0.1 --exit-zero

# the 3-D sample: a tiny 3d_fullres model on anisotropic volumes (organ and lesion); its 60 test
# volumes are generated (not stored), 12 of them with an organ-like artefact the model segments
SAMPLE_3D_MODEL := sample_data/model/Dataset992_Seg4Seg3D/nnUNetTrainer__nnUNetPlans__3d_fullres

demo-3d: $(STAMP)
	$(BIN)/python sample_data/build_3d.py --data seg4seg_3d/data
	$(BIN)/seg4seg audit --model $(SAMPLE_3D_MODEL) --data seg4seg_3d/data --out seg4seg_3d \
		--device cpu --fail-gap 0.05 --exit-zero

# the candidate model (more training, but site D's striped structures traced tightly) against the
# sample model, on the sample test set plus 24 generated site D cases: the regression comes first;
# --exit-zero: the demo reports, it does not gate
CANDIDATE_MODEL := sample_data/model/Dataset991_Seg4SegCandidate/nnUNetTrainer__nnUNetPlans__2d

demo-compare: $(STAMP)
	$(BIN)/python sample_data/build.py --compare-data seg4seg_compare/data
	$(BIN)/seg4seg compare --baseline $(SAMPLE_MODEL) --candidate $(CANDIDATE_MODEL) \
		--data seg4seg_compare/data --out seg4seg_compare --device cpu \
		--fail-regression 0.05 --exit-zero

# Debian's Chromium for the browser test of report.html; that test skips when it cannot be had
.PHONY: chromium
chromium:
	@bash .ci/install_chromium.sh

test: $(STAMP) chromium
	$(BIN)/ruff check seg4seg_cli tests benchmarks sample_data
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check seg4seg_cli tests benchmarks sample_data
	$(BIN)/ruff format --check seg4seg_cli tests benchmarks sample_data

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_predict_overhead.py
	$(BIN)/python benchmarks/bench_discover.py

# the libraries compared against are installed for the benchmark only
bench-features: $(STAMP)
	$(BIN)/pip install --quiet "$(TORCH_PIN)" surface-distance==0.1 medpy
	$(BIN)/python benchmarks/bench_features.py

# discovery quality on planted-failure scenarios, reported seeds 0-4 (settings are chosen on the
# development seeds: seg4seg bench --seed 100 --seeds 2); trains 20 tiny nnU-Nets on 2 cores
bench-discovery: $(STAMP)
	$(BIN)/seg4seg bench --methods all --scenarios all --seeds 5 --doc docs/BENCHMARK_DISCOVERY.md

clean:
	rm -rf seg4seg_out seg4seg_3d seg4seg_compare seg4seg_bench .pytest_cache build *.egg-info
