# RadiomicsLab: the two set-up commands are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench lock clean web

venv: $(STAMP)

# Rebuilt only when the lock file or the package metadata changed.
$(STAMP): requirements.lock pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.lock
	$(VPY) -m pip install -q --no-deps -e .
	$(VPY) -m compileall -q RadiomicsLabLib  # byte-code even where PYTHONDONTWRITEBYTECODE is set
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/radiomicslab demo -o out/demo

web: $(STAMP)
	$(VENV)/bin/radiomicslab web

test: $(STAMP)
	$(VPY) -m pytest -q

bench: $(STAMP)
	$(VPY) Testing/benchmarks/bench_extract_overhead.py
	$(VPY) Testing/benchmarks/bench_ibsi_engine.py

lock: $(STAMP)
	{ echo "# Pinned dependencies of RadiomicsLab (Python 3.11). Regenerate with: make lock"; \
	  $(VPY) -m pip freeze --exclude-editable | sort -f; } > requirements.lock

clean:
	rm -rf $(VENV) out
