# The two commands (see README): `make run` brings the whole stack up on this
# machine, `make test` runs every test. Both set up what is missing first.
# `make lock` refreshes constraints.txt, the versions everything installs.
SHELL := /bin/bash

.PHONY: run test unit integration bootstrap lock

bootstrap:
	@scripts/bootstrap

run: bootstrap
	@set -a; [ ! -f .env ] || . ./.env; set +a; exec .venv/bin/masking run

test: bootstrap
	.venv/bin/lint-imports --no-cache
	.venv/bin/python -m pytest -ra

unit: bootstrap
	.venv/bin/python -m pytest tests/unit -q

integration: bootstrap
	.venv/bin/python -m pytest tests/integration -ra

lock:
	@scripts/lock
