# The two commands a newcomer needs: `make demo` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTHON  ?= python3
PYTEST_ARGS ?=

.PHONY: setup test test-unit demo lock clean automations

# uv (installed with pip if missing) syncs the venv to the pinned lock in seconds.
# --compile-bytecode writes every .pyc at install time: where PYTHONDONTWRITEBYTECODE is set (as on
# our CI machines) Python would otherwise recompile Prefect on every start, ~4.5 s per command.
$(VENV)/.synced: requirements.lock pyproject.toml
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	[ -x $(PY) ] || $(PYTHON) -m uv venv --quiet --python $(PYTHON) $(VENV)
	$(PYTHON) -m uv pip sync --quiet --compile-bytecode --python $(PY) requirements.lock
	$(PYTHON) -m uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

setup: $(VENV)/.synced

# scripts/test-env.sh installs the system packages the suite needs when missing (as root), starts a
# Docker engine when none answers (stopped again by its PID afterwards), then runs the suite.
test: setup
	scripts/test-env.sh $(PY) -m pytest $(PYTEST_ARGS)

# The fast tier: no servers, no system packages, nothing started.

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/python scripts/demo.py

# Notifications as Prefect automations (deployments/automations.yaml) sending to a webhook; needs
# PREFECT_API_URL. `@` keeps make from echoing the URL, which may hold a token.
automations: setup
	@QILBEE_WEBHOOK_URL="$(WEBHOOK_URL)" $(PY) -m deployments.automations apply $(if $(RPO),--rpo $(RPO))

# Re-pin every dependency after changing pyproject.toml (no download addresses are written).
lock:
	$(PYTHON) -m uv pip compile pyproject.toml --extra test --extra worker --python-version 3.11 --no-header -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
