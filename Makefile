# Set-up and jobs. Every install step leaves a stamp in $(VENV)/.stamps, so a second run takes
# seconds; delete the stamp (or the venv) to redo a step.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.stamps
PIP_INSTALL := $(PIP) install --disable-pip-version-check -c constraints.txt

.PHONY: install test test-openpcdet demo demo-core bench bench-export data docs clean

install: $(STAMP)/project

$(STAMP)/venv:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@mkdir -p $(STAMP) && touch $@

# torch 2.13.0 (the registry's CUDA build; it runs on CPU) + torchvision 0.28.0. With its CUDA
# packages the venv takes ~5.4 GB, so a disk with less room fails here, before pip starts.
NEED_GB ?= 7
$(STAMP)/torch: $(STAMP)/venv constraints.txt
	@free=$$(df -Pk $(VENV) | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ "$$free" -lt $(NEED_GB) ]; then \
		echo "error: $$free GB free where $(VENV) lives; installing torch with its CUDA packages needs about $(NEED_GB) GB (make NEED_GB=N changes the check)"; \
		exit 1; fi
	$(PIP_INSTALL) "torch===2.13.0" "torchvision==0.28.0"
	@touch $@

# mmcv-full 1.7.2 with compiled ops: built once per torch version into ~/.cache/rdoq-plugins.
$(STAMP)/mmcv: $(STAMP)/torch tools/install_mmcv.sh
	$(PIP_INSTALL) "setuptools>=77,<81" wheel ninja
	bash tools/install_mmcv.sh $(PY) 1.7.2
	@touch $@

$(STAMP)/deps: $(STAMP)/mmcv requirements.txt constraints.txt
	$(PIP_INSTALL) -r requirements.txt
	@touch $@

$(STAMP)/project: $(STAMP)/deps pyproject.toml
	$(PIP) install --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

test: install
	$(PY) -m pytest

# The adapter against a real OpenPCDet checkout on CPU (no build: pcdet_ext/standins stands in for
# its compiled ops): OPENPCDET_ROOT=/path/to/OpenPCDet make test-openpcdet. Installs OpenPCDet's
# pure-Python dependencies (kornia 0.6.12: later releases break its Argoverse 2 module at import),
# then runs tests/pcdet_ext/test_real_openpcdet.py (skipped with the reason when the variable is unset).
# nuscenes-devkit 1.2.0 declares numpy<2 but its detection evaluation runs under our numpy 2: it is
# installed without its dependencies, plus the two its evaluation imports (docs/openpcdet.md).
OPENPCDET_DEPS := easydict pyquaternion numba scikit-image SharedArray pandas "kornia==0.6.12" \
	cachetools scikit-learn  # cv2: mmcv's opencv-python (constraints.txt)
test-openpcdet: install
	@test -n "$(OPENPCDET_ROOT)" && test -f "$(OPENPCDET_ROOT)/pcdet/__init__.py" || \
		{ echo "error: set OPENPCDET_ROOT to an OpenPCDet checkout (git clone https://github.com/open-mmlab/OpenPCDet)"; exit 2; }
	$(PIP_INSTALL) $(OPENPCDET_DEPS)
	$(PIP) install --disable-pip-version-check --no-deps "nuscenes-devkit==1.2.0"
	OMP_NUM_THREADS=1 OPENPCDET_ROOT=$(OPENPCDET_ROOT) PYTHONPATH=$(OPENPCDET_ROOT) \
		$(PY) -m pytest tests/pcdet_ext/test_real_openpcdet.py tests/pcdet_ext/test_openpcdet_cpu.py \
		tests/pcdet_ext/test_rotated_boxes.py tests/rdoq_bench/test_nuscenes_format.py \
		tests/rdoq_bench/test_nuscenes_tables.py

# The embedded benchmark's data: generated, never downloaded (~40 s).
data/digits_coco/spec.json: | install
	$(PY) -m rdoq_bench.digits_coco data/digits_coco

data: data/digits_coco/spec.json

# QDrop W4A4 of the bundled Faster R-CNN on CPU, FP vs quantized box AP.
demo: install data
	$(PY) tools/test.py configs/bench/qdrop/faster_rcnn_r50_narrow_digits_w4a4.py \
		checkpoints/faster_rcnn_r50_narrow_digits.pth --eval bbox --work-dir work_dirs/demo

# The core alone on a tiny CNN (seconds).
demo-core: install
	$(PY) tools/demo_core.py

# The config reference, generated from the schema (tests/core/config/test_reference.py fails when stale).
docs: install
	$(PY) -m rdoq_plugins.config.reference --write docs/config.md

# Long experiments (hours on 2 CPU cores; every row resumes): the mmdet detectors (bench/results.json),
# the bit allocators (bench/alloc.json), the sparse VoxelNeXt-shaped detector (bench/results_sparse.json)
# and the shipped COCO configs at 1333x800 (bench/scale.json, ~40 min).
bench: install data
	OMP_NUM_THREADS=1 $(PY) -m rdoq_bench.run_scale
	$(PY) -m rdoq_bench.run_alloc
	$(PY) -m rdoq_bench.run_sparse
	$(PY) -m rdoq_bench.run_mmdet

# The export rows (bench/export.json, ~30 min on one thread): the quantized checkpoints of the mmdet
# bench work dirs in work_dirs/repro exported, checked layer by layer, evaluated with onnxruntime and
# timed on CPU (docs/export.md); rows whose checkpoint is unchanged are kept.
bench-export: install data
	OMP_NUM_THREADS=1 $(PY) -m rdoq_bench.run_export

clean:
	rm -rf $(VENV)
