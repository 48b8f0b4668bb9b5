# Two entry points for a fresh clone: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv and install pinned dependencies on first use.
# The pinned set (numpy 2.4, scipy 1.17, …) needs Python 3.11+: python3 where it is one, else the
# newest python3.1x on PATH (Ubuntu 22.04's python3 is 3.10); none: the venv rule says so.
PYTHON ?= $(shell for p in python3 python3.14 python3.13 python3.12 python3.11; do \
	"$$p" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null && echo "$$p" && break; done)
VENV := .venv
PY := $(VENV)/bin/python
# pip.conf's `user = true` (or PIP_USER=1), as Debian users set it, makes pip refuse a venv
export PIP_USER := 0
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
	test/test_share_*.py test/test_nodes_replay.py test/test_guards_*.py test/test_dds_runtime.py \
	test/test_numpy_versions.py
# The Humble run (CPython 3.10, numpy 1.21.5, scipy 1.8.0; requirements-humble.txt): every test file
# but those that need torch (pip would bring CUDA's gigabytes for it there), listed here.
HUMBLE_NEED_TORCH := test_hd40_fusion_geometry.py test_hd39_far_ground_truth.py test_docs_promises.py test_fleet_merge.py test_outside_ros2_qos.py \
	test_guards_survivors25.py test_guards_survivors26.py test_guards_survivors27.py test_outside_hd_map2.py \
	test_outside_session20b.py test_guards_survivors30.py test_outside_hd_map3.py \
	test_outside_nothing_lost3.py test_outside_recordings3.py test_outside_ros2_real3.py \
	test_outside_hd_node4.py test_outside_session21b.py test_guards_survivors31.py test_outside_session21c.py \
	test_guards_survivors32.py test_guards_survivors33.py test_outside_hd_map4.py test_outside_nothing_lost5.py \
	test_outside_recordings4.py test_outside_ros2_real4.py test_outside_session22.py test_outside_session22b.py \
	test_outside_session22c.py test_outside_tf_jump.py test_outside_hd_map6.py test_outside_hd_map7.py test_guards_survivors34.py test_guards_survivors35.py test_guards_survivors39.py test_guards_survivors42.py test_outside_hd_map8.py \
	test_fleet_server.py test_fleet_zenoh.py test_formats_spz.py test_guards_core.py \
	test_guards_lanes.py test_guards_mapping.py test_guards_survivors.py test_guards_survivors14.py \
	test_guards_survivors15.py test_guards_survivors16.py test_guards_survivors17.py \
	test_guards_survivors2.py test_guards_survivors20.py test_guards_survivors22.py \
	test_guards_survivors23.py test_guards_survivors3.py test_guards_survivors6.py \
	test_guards_survivors8.py test_guards_survivors9.py test_hd_bag_path.py test_hd_lane_map.py \
	test_hd_model_forward.py test_hd_model_matching.py test_hd_model_raster.py \
	test_hd_model_train.py test_hd_onnx.py test_hd_region.py test_hostile_bags.py \
	test_hostile_bags_and_options.py test_hostile_cli.py test_hostile_files.py test_hostile_map.py \
	test_hostile_nodes.py test_hostile_robot_inputs.py test_hostile_subscriptions.py \
	test_mapping_calibration.py test_mapping_kitchen.py \
	test_mapping_levels.py test_mapping_mapper.py test_mapping_params.py \
	test_mapping_virtual_views.py test_nodes_hd_map.py test_nodes_replay.py \
	test_outside_hd_map.py test_outside_nothing_lost.py test_outside_ros2_nodes.py \
	test_rclpy_runtime.py test_real_inputs_hd.py test_real_inputs_mapping.py \
	test_real_inputs_topics.py test_render_conventions.py \
	test_render_cpu.py test_render_cuda.py test_share_rotation_refine.py test_outside_render.py \
	test_outside_map_quality.py test_outside_hd37.py test_outside_lost37.py test_guards_survivors72_hd.py \
	test_outside_hd_frames37.py test_ros38_late_joiner.py test_ros39_call_again.py \
	test_replay39_last_snapshot.py test_hd39_unstamped_info_k.py
HUMBLE_TESTS = $(filter-out $(addprefix test/,$(HUMBLE_NEED_TORCH)),$(wildcard test/test_*.py))
VENVH := .venv-humble
PYH := $(VENVH)/bin/python
# a Python 3.10 that runs (pyenv's, else python3.10 on PATH; a pyenv shim may name one it cannot
# run); none: `make test-humble` says so and passes
PY310 ?= $(shell for p in $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) python3.10; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo "$$p" && break; done)
# The edit loop (`make test-fast`, well under a minute): unit tests of the core, messages and codec.
FAST_TESTS := test/test_messages_core.py test/test_messages_pointcloud2.py test/test_tf_buffer.py \
	test/test_sync_approximate.py test/test_share_codec.py test/test_share_tables.py \
	test/test_guards_core.py test/test_guards_codec.py test/test_guards_mapping.py test/test_guards_format.py
PYTEST_ENV := OMP_WAIT_POLICY=PASSIVE

.PHONY: demo test test-fast test-numpy1 test-humble lint venv venv-numpy1 clean

# A venv is not relocatable (pip writes its scripts' Python by absolute path, its editable install
# this clone's src too): one whose Python no longer runs, or whose gs-mapping script starts another
# folder's Python (the clone moved, renamed or copied; a pyenv Python removed), is taken as not
# installed and made again from scratch ($(call fresh,VENV): venv's --clear for such a one). The
# script's Python is read from its shebang, or from pip's /bin/sh trampoline for long or spaced
# paths ('#' cannot appear in the code: make reads a comment there), and compared by folder (a symlinked path to the same folder is the same venv).
venv_alive = $(shell "$(1)/bin/python" -c 'import os, sys; \
	lines = open(sys.argv[1], encoding="utf-8").read(4096).splitlines(); \
	tramp = lines[1].split("exec", 1)[-1].rsplit("$$0", 1)[0].strip(chr(34) + chr(39) + " "); \
	py = tramp if lines[0].strip().endswith("/bin/sh") else lines[0][2:].strip(); \
	same = os.path.realpath(os.path.dirname(py)) == os.path.realpath(os.path.dirname(sys.argv[2])); \
	print("yes" if same and os.path.basename(py) == "python" else "")' \
	"$(1)/bin/gs-mapping" "$(1)/bin/python" 2>/dev/null)
fresh = $(if $(call venv_alive,$(1)),,--clear)
# the pinned set's Python, or one line saying none was found
need_python = @if [ -z "$(PYTHON)" ]; then echo "make: the pinned dependencies need Python 3.11 or newer" \
	"(python3 is $$(python3 -V 2>&1)): install python3.11 or name one, make PYTHON=/path/to/python3.11"; \
	exit 2; fi
$(foreach v,$(VENV) $(VENV1) $(VENVH),\
	$(if $(wildcard $(v)/.installed),$(if $(call venv_alive,$(v)),,$(shell rm -f $(v)/.installed))))

$(VENV)/.installed: requirements.txt requirements-test.txt setup.py pyproject.toml
	$(need_python)
	$(PYTHON) -m venv $(call fresh,$(VENV)) $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	# nuscenes-devkit pins numpy<2 but runs on ours: installed without its pins (its real imports are
	# pinned in requirements-test.txt), for the nuScenes loader's test.
	$(PY) -m pip install --quiet --no-deps nuscenes-devkit==1.2.0
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV1)/.installed: requirements-numpy1.txt setup.py pyproject.toml
	$(need_python)
	$(PYTHON) -m venv $(call fresh,$(VENV1)) $(VENV1)
	$(PY1) -m pip install --quiet -r requirements-numpy1.txt
	$(PY1) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENVH)/.installed: requirements-humble.txt setup.py pyproject.toml
	$(PY310) -m venv $(call fresh,$(VENVH)) $(VENVH)
	$(PYH) -m pip install --quiet --only-binary=:all: -r requirements-humble.txt
	$(PYH) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

venv-numpy1: $(VENV1)/.installed

# --overwrite: a second `make demo` redoes the first's (the CLI still refuses a folder that holds
# more than a demo's outputs)
demo: venv
	$(VENV)/bin/gs-mapping demo --overwrite --out "$(OUT)"

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
	$(MAKE) --no-print-directory test-humble

test-numpy1: venv-numpy1
	$(PYTEST_ENV) $(PY1) -m pytest -m "not slow" -p no:cacheprovider $(NUMPY1_TESTS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-numpy1: pytest collected no tests"; exit 1; fi; exit $$rc

# ROS 2 Humble's Python: what numpy 1.21 and CPython 3.10 do differently (both promised in README)
test-humble:
	@if [ -z "$(PY310)" ]; then echo "make test-humble: no Python 3.10 on this machine: skipped"; exit 0; fi; \
	$(MAKE) --no-print-directory $(VENVH)/.installed && \
	$(PYTEST_ENV) $(PYH) -m pytest -m "not slow" -p no:cacheprovider $(HUMBLE_TESTS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-humble: pytest collected no tests"; exit 1; fi; exit $$rc

test-fast: venv
	$(PYTEST_ENV) $(PY) -m pytest -q -m "not slow and not shared_data" $(FAST_TESTS)

clean:
	rm -rf $(VENV) $(VENV1) $(VENVH) "$(OUT)" build *.egg-info src/*.egg-info
