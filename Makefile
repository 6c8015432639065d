# The two commands (see README): `make run` brings the whole stack up on this
# machine, `make test` runs every test. Both set up what is missing first.
SHELL := /bin/bash

.PHONY: run test unit integration bootstrap

bootstrap:
	@scripts/bootstrap

# `make run NODES=2`: the Kamailio edge in front of two Asterisk nodes (docs/scaling.md).
run: bootstrap
	@set -a; [ ! -f .env ] || . ./.env; set +a; exec .venv/bin/masking run $(if $(NODES),--nodes $(NODES))

test: bootstrap
	.venv/bin/lint-imports --no-cache
	.venv/bin/python -m pytest -ra

unit: bootstrap
	.venv/bin/python -m pytest tests/unit -q

integration: bootstrap
	.venv/bin/python -m pytest tests/integration -ra
