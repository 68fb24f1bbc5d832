# Two commands a newcomer needs (both install everything on a fresh machine):
#   make demo   train + evaluate a SASA classifier on the embedded demo data
#   make test   run the test suite
#   make demo-all  train + evaluate every detection / segmentation demo
#                  (RetinaNet, Mask R-CNN, UperNet, RT-DETR; ~30 min on 2 cores)
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/demo
DEMO_CFG ?= configs/demo/sasa-r26-demo_1xb64-20e_digits.py
DEMO_DIR ?= work_dirs/demo

.PHONY: env data demo demo-all test lint benchmark clean

env:
	bash scripts/setup_env.sh

data: env
	$(PY) tools/misc/make_demo_data.py $(DATA)

demo: data
	$(PY) tools/train.py $(DEMO_CFG) --work-dir $(DEMO_DIR)
	$(PY) tools/test.py $(DEMO_CFG) $(DEMO_DIR)/epoch_20.pth --work-dir $(DEMO_DIR)

DENSE_DEMOS ?= retinanet_sasa-r26-demo_fpn_1xb8-16e_digits \
	mask-rcnn_sasa-r26-demo_fpn_1xb8-8e_digits \
	upernet_sasa-r26-demo_1xb16-1500iter_digits-64x64 \
	rtdetr_r18vd-demo_1xb8-24e_digits

# each: train, then test the last checkpoint (work_dirs/<name>/last_checkpoint)
demo-all: demo
	set -e; for name in $(DENSE_DEMOS); do \
	  $(PY) tools/train.py configs/demo/$$name.py --work-dir work_dirs/$$name; \
	  $(PY) tools/test.py configs/demo/$$name.py \
	    $$(cat work_dirs/$$name/last_checkpoint) --work-dir work_dirs/$$name; \
	done

# the whole suite; the quick loop skips the end-to-end runs (marked slow):
#   $(PY) -m pytest tests -m "not slow"
test: env
	$(PY) -m pytest tests -q -ra --durations=15

# flake8, isort and codespell as local pre-commit hooks (.pre-commit-config.yaml)
lint: env
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/pre-commit run --all-files --show-diff-on-failure

# writes work_dirs/benchmarks (never over the committed reference run in docs/benchmarks)
benchmark: env
	$(PY) tools/analysis_tools/benchmark_attention.py --out-dir work_dirs/benchmarks
	$(PY) tools/analysis_tools/benchmark_report.py work_dirs/benchmarks > work_dirs/benchmarks/tables.md

clean:
	rm -rf work_dirs
