# recsite: `make run` starts everything, `make test` runs the whole suite.
# Both create .venv and install requirements.txt on first use; later runs are quick.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
CHROMIUM := /usr/bin/chromium

.PHONY: run test setup deps browser lint format bench drills soak clean

run: setup
	$(PY) manage.py bootstrap
	$(PY) manage.py serve

test: deps browser
	$(PY) -m pytest $(PYTEST_ARGS)

setup: deps
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0

deps: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

# Browser tests drive Debian's chromium; install it when missing and we may (root with apt).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's chromium for the browser tests..."; \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; \
		else \
			echo "Note: $(CHROMIUM) is missing; browser tests will be skipped (install the 'chromium' package)."; \
		fi; \
	fi

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	@for script in benchmarks/bench_*.py; do [ -e "$$script" ] || continue; echo "== $$script"; $(PY) $$script || exit 1; done

# Fault drills (docs/operations.md): disk full (mounts a small tmpfs; needs root), the worker
# killed mid-import and mid-training. Each prints what it tried and what it checked.
drills: deps
	$(PY) benchmarks/drills/run_drills.py $(PYTEST_ARGS)

# Soak (docs/operations.md): minutes of mixed reads and event writes on gunicorn against its own
# PostgreSQL database; no errors, bounded memory, no lost event. SOAK_ARGS="--minutes 10" etc.
soak: deps
	$(PY) benchmarks/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var/staticfiles
