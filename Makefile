# Two commands on a fresh machine (see README):
#   make serve   -> install into .venv and run the API + a worker on SQLite (no servers needed)
#   make test    -> install, start Redis/Postgres if they do not answer, run the test suite
PY ?= python3
VENV := .venv

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

serve: install
	$(VENV)/bin/wedgenet serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

test:
	bash .ci/run

lint: install
	$(VENV)/bin/ruff check wedgenet app worker tests bench
	$(VENV)/bin/mypy wedgenet app worker

.PHONY: install serve test lint
