# Hakobune: `make run` starts the platform, `make test` runs the whole suite.
# Both install what is missing first (scripts/install-deps.sh).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export HAKOBUNE_DATA_DIR ?= $(CURDIR)/var

.PHONY: run test stop status setup deps stack stacks-all migrate admin-password logs cloudrun-smoke

run: setup
	@bash scripts/start.sh

test: export HAKOBUNE_WITH_BROWSER = 1
test: setup stacks-all
	@bash scripts/test.sh

stop:
	@bash scripts/stop.sh

status:
	@bash scripts/status.sh

setup: deps migrate stack

deps:
	@bash scripts/install-deps.sh

migrate:
	@bash scripts/with-env.sh $(PY) manage.py migrate --noinput -v0
	@bash scripts/with-env.sh $(PY) manage.py migrate --database logs --noinput -v0
	@bash scripts/with-env.sh $(PY) manage.py collectstatic --noinput -v0

stack:
	@bash scripts/with-env.sh $(PY) manage.py stack ensure python

# The tests deploy an app of every stack; build them all up front (cached).
stacks-all: stack
	@for language in node go static python-node java ruby php; do bash scripts/with-env.sh $(PY) manage.py stack ensure $$language || exit 1; done

admin-password:
	@bash scripts/with-env.sh $(PY) manage.py create_first_admin --reset

logs:
	@tail -n 50 -f $(HAKOBUNE_DATA_DIR)/log/*.log

# Deploys a fixture app to a real Google Cloud project (needs CLOUDRUN_PROJECT and
# credentials; refuses without them). Not part of `make test`.
cloudrun-smoke:
	@$(PY) scripts/cloudrun_smoke.py $(ARGS)
