# Two entry points: `make demo` and `make test`. Both create/update the virtualenv in .venv.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-out

.PHONY: install demo test test-fast bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install whenever setup.py changes (new dependencies), otherwise reuse the venv.
$(STAMP): setup.py | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tfresflow train --data checkerboard --model resflow --n-steps 8 --hidden 128,128 \
		--steps 4000 --lr 2e-3 --out $(DEMO_OUT) --overwrite

test: $(STAMP)
	$(PY) -m pytest -n 2

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(DEMO_OUT) runs .pytest_cache
