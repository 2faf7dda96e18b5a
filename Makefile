# ImageNet-21K-P — set-up, demo and tests. `make demo` and `make test` create the environment
# (.venv, pillow-simd, WordNet) on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO ?= demo-out
PILLOW_SIMD ?= pillow-simd==12.1.1.post0
SYSTEM_PACKAGES := libjpeg-dev zlib1g-dev wordnet-base wordnet-sense-index
SIMD_CC := cc $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && echo -mavx2)

.PHONY: env test demo bench clean-demo

env: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@# Debian packages: JPEG/zlib headers for pillow-simd, WordNet 3.0 dict files for nltk.
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "note: install $(SYSTEM_PACKAGES) (or equivalents) for pillow-simd and offline WordNet"; fi; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	@# pillow-simd replaces the pillow that torchvision pulls in (same PIL module, SIMD resize).
	$(PY) -m pip uninstall -q -y pillow pillow-simd
	CC="$(SIMD_CC)" $(PY) -m pip install -q $(PILLOW_SIMD) || { \
	  echo "warning: pillow-simd did not build; falling back to stock pillow"; $(PY) -m pip install -q pillow; }
	$(PY) -m tools.install_wordnet
	$(PY) -m pipeline --version
	touch $@

test: env
	$(PY) -m pytest -q || [ $$? -eq 5 ]

demo: env
	$(PY) -m tools.demo_archive make-archive $(DEMO)/imagenet21k-demo.tar
	$(VENV)/bin/luigi --module pipeline BuildImageNet21KP --local-scheduler \
	  --archive $(DEMO)/imagenet21k-demo.tar --output-dir $(DEMO)/imagenet21kp \
	  --min-images 31 --val-per-class 5 --samples-per-shard 200
	$(PY) -m trainer --data $(DEMO)/imagenet21kp --output $(DEMO)/run --model test_resnet \
	  --input-size 64 --batch-size 16 --epochs 2 --lr 2e-3 --workers 1 --randaugment none --cutout 0 --overwrite

bench: env
	$(PY) benchmarks/vs_miil.py
	$(PY) benchmarks/gzip_in_place.py
	$(PY) benchmarks/read_pattern.py
	$(PY) benchmarks/convert_stage.py
	$(PY) benchmarks/image_path.py
	$(PY) benchmarks/fixed_costs.py
	$(PY) benchmarks/build_workers.py
	$(PY) benchmarks/planning.py
	$(PY) benchmarks/loader.py
	$(PY) benchmarks/semantic_loss.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/release_copy.py
	$(PY) benchmarks/checkpoint_cost.py
	$(PY) benchmarks/shard_tar.py
	$(PY) benchmarks/tar_headers.py
	$(PY) benchmarks/near_duplicates.py --lookup-sizes 5000,50000

clean-demo:
	rm -rf $(DEMO)
