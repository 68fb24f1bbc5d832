# Two commands a newcomer needs (both install everything on a fresh machine):
#   make demo   train + evaluate a SASA classifier on the embedded demo data
#   make test   run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/demo
DEMO_CFG ?= configs/demo/sasa-r26-demo_1xb64-20e_digits.py
DEMO_DIR ?= work_dirs/demo

.PHONY: env data demo test benchmark clean

env:
	bash scripts/setup_env.sh

data: env
	$(PY) tools/misc/make_demo_data.py $(DATA)

demo: data
	$(PY) tools/train.py $(DEMO_CFG) --work-dir $(DEMO_DIR)
	$(PY) tools/test.py $(DEMO_CFG) $(DEMO_DIR)/epoch_20.pth --work-dir $(DEMO_DIR)

test: env
	$(PY) -m pytest tests -q -ra --durations=15

benchmark: env
	$(PY) tools/analysis_tools/benchmark_attention.py --out-dir docs/benchmarks

clean:
	rm -rf work_dirs
