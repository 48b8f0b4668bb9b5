# Two entry points for a fresh clone: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv and install pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= out
PYTEST_ARGS ?=

.PHONY: demo test venv clean

$(VENV)/.installed: requirements.txt requirements-test.txt setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	# nuscenes-devkit pins numpy<2 but runs on ours: installed without its pins (its real imports are
	# pinned in requirements-test.txt), for the nuScenes loader's test.
	$(PY) -m pip install --quiet --no-deps nuscenes-devkit==1.2.0
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/gs-mapping demo --out $(OUT)

# pytest exits 5 when it collected no test; say so plainly rather than pass silently.
test: venv
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info src/*.egg-info
