# Two entry points for a fresh clone: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv and install pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A second, small venv with ROS 2 Jazzy's numpy (1.26) for the core, message, node and codec tests:
# numpy 1.21..2.x must both work, and the main venv has numpy 2.
VENV1 := .venv-numpy1
PY1 := $(VENV1)/bin/python
OUT ?= out
PYTEST_ARGS ?=
# The numpy-1.26 run: core, messages, nodes (replay), codec. Left to the main run: the HD model,
# the world renderer, bag-format cross-readers, the nodes as DDS processes and the slow tests.
NUMPY1_TESTS := test/test_messages_*.py test/test_tf_buffer.py test/test_sync_approximate.py \
	test/test_bag_io.py test/test_bag_corrupt.py test/test_render_conventions.py test/test_mapping_mapper.py \
	test/test_share_*.py test/test_nodes_replay.py test/test_guards_*.py test/test_dds_runtime.py
# The edit loop (`make test-fast`, well under a minute): unit tests of the core, messages and codec.
FAST_TESTS := test/test_messages_core.py test/test_messages_pointcloud2.py test/test_tf_buffer.py \
	test/test_sync_approximate.py test/test_share_codec.py test/test_share_tables.py \
	test/test_guards_core.py test/test_guards_codec.py test/test_guards_mapping.py test/test_guards_format.py
PYTEST_ENV := OMP_WAIT_POLICY=PASSIVE

.PHONY: demo test test-fast test-numpy1 lint venv venv-numpy1 clean

$(VENV)/.installed: requirements.txt requirements-test.txt setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	# nuscenes-devkit pins numpy<2 but runs on ours: installed without its pins (its real imports are
	# pinned in requirements-test.txt), for the nuScenes loader's test.
	$(PY) -m pip install --quiet --no-deps nuscenes-devkit==1.2.0
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV1)/.installed: requirements-numpy1.txt setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV1)
	$(PY1) -m pip install --quiet -r requirements-numpy1.txt
	$(PY1) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

venv-numpy1: $(VENV1)/.installed

demo: venv
	$(VENV)/bin/gs-mapping demo --out $(OUT)

# ruff (lint + format), mypy on the codec and the messages module, the one-way layers contract.
lint: venv
	$(VENV)/bin/ruff check src test bench
	$(VENV)/bin/ruff format --check src test bench
	$(VENV)/bin/mypy
	PYTHONPATH=src $(VENV)/bin/lint-imports

# pytest exits 5 when it collected no test; say so plainly rather than pass silently.
test: lint
	$(PYTEST_ENV) $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests"; exit 1; fi; exit $$rc
	$(MAKE) --no-print-directory test-numpy1

test-numpy1: venv-numpy1
	$(PYTEST_ENV) $(PY1) -m pytest -m "not slow" -p no:cacheprovider $(NUMPY1_TESTS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-numpy1: pytest collected no tests"; exit 1; fi; exit $$rc

test-fast: venv
	$(PYTEST_ENV) $(PY) -m pytest -q -m "not slow and not shared_data" $(FAST_TESTS)

clean:
	rm -rf $(VENV) $(VENV1) $(OUT) build *.egg-info src/*.egg-info
