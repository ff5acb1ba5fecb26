# RadiomicsLab: the two set-up commands are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Numba kernels compiled ahead (RadiomicsLabLib/warmup.py): redone when the install or the kernels' sources change.
WARM := $(VENV)/.kernels-compiled
KERNEL_SOURCES := RadiomicsLabLib/featuremap_kernels.py RadiomicsLabLib/featuremaps.py RadiomicsLabLib/observers.py \
  RadiomicsLabLib/ibsi/_preprocessing_kernels.py $(wildcard RadiomicsLabLib/ibsi/features/_*_kernels.py)

# Debian packages the tests need beyond Python: the web GUI is tested in a real browser (Debian's Chromium,
# driven by Playwright) whose Slicer views render offscreen through EGL (libglvnd's libEGL / libGL with
# Mesa's EGL and its llvmpipe software driver: no GPU, no X server); CMake runs the extension metadata check;
# plastimatch and DCMTK are the independent DICOM writer, rasteriser and reader the DICOM tests compare against.
SYSTEM_PACKAGES := chromium libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri cmake plastimatch dcmtk

.PHONY: venv demo test bench lock clean web system-packages

venv: $(STAMP) $(WARM)

# Rebuilt only when the lock file or the package metadata changed.
$(STAMP): requirements.lock pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.lock
	$(VPY) -m pip install -q --no-deps -e .
	$(VPY) -m compileall -q RadiomicsLabLib  # byte-code even where PYTHONDONTWRITEBYTECODE is set
	touch $(STAMP)

# Compile every numba kernel once, into numba's cache (RadiomicsLabLib/__pycache__ here), so that no map run waits
# for the compiler (about a minute, once). A failure only warns: the first map run then compiles what it needs.
$(WARM): $(STAMP) $(KERNEL_SOURCES)
	@echo "== compiling the feature map kernels (numba, once)"
	@if $(VPY) -m RadiomicsLabLib.warmup; then touch $(WARM); else \
	  echo "warning: compiling the kernels ahead failed (see above); the first map run will compile them" >&2; fi

demo: $(STAMP) $(WARM)
	$(VENV)/bin/radiomicslab demo -o out/demo

web: $(STAMP) $(WARM)
	$(VENV)/bin/radiomicslab web

test: system-packages $(STAMP) $(WARM)
	$(VPY) -X faulthandler -m pytest -q  # -X faulthandler: a crash, even at exit, prints every thread's stack

# Installs the missing SYSTEM_PACKAGES with apt-get as root or through password-less sudo; otherwise stops
# at once, printing the command that installs them.
system-packages:
	@missing=$$(for package in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$package" 2>/dev/null | grep -q "install ok installed" || echo "$$package"; done); \
	missing=$$(echo $$missing); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else \
	  echo "make test needs these Debian packages for the browser and extension tests: $$missing" >&2; \
	  echo "Install them, then run make test again:" >&2; \
	  echo "  sudo apt-get update && sudo apt-get install -y $$missing" >&2; \
	  exit 1; \
	fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make test needs these Debian packages, and this system has no apt-get: $$missing" >&2; exit 1; \
	fi; \
	echo "== installing $$missing (Debian packages) for the web GUI and extension tests"; \
	$$sudo apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null

bench: $(STAMP) $(WARM)
	$(VPY) Testing/benchmarks/bench_extract_overhead.py
	$(VPY) Testing/benchmarks/bench_ibsi_engine.py
	$(VPY) Testing/benchmarks/bench_read_verify.py

lock: $(STAMP)
	{ echo "# Pinned dependencies of RadiomicsLab (Python 3.11). Regenerate with: make lock"; \
	  $(VPY) -m pip freeze --exclude-editable | sort -f; } > requirements.lock

clean:
	rm -rf $(VENV) out
