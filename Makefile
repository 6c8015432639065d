# The two commands (see README): `make run` brings the whole stack up on this
# machine, `make test` runs every test. Both set up what is missing first.
# `make lock` refreshes constraints.txt, the versions everything installs.
SHELL := /bin/bash

.PHONY: run test unit integration bootstrap lock bench

bootstrap:
	@scripts/bootstrap

# Unless the environment or .env names a database: migrations as the local
# superuser, the service as its least-privileged role (docs/security.md).
# `make run NODES=2`: the Kamailio edge in front of two Asterisk nodes (docs/scaling.md).
run: bootstrap
	@set -a; [ ! -f .env ] || . ./.env; \
	if [ -z "$${MASKING_DATABASE_URL+set}" ]; then \
		MASKING_DATABASE_URL=postgresql://masking_app@127.0.0.1:5432/masking; \
		MASKING_DATABASE_ADMIN_URL=$${MASKING_DATABASE_ADMIN_URL-postgresql://postgres@127.0.0.1:5432/masking}; \
	fi; set +a; exec .venv/bin/masking run $(if $(NODES),--nodes $(NODES))

test: bootstrap
	.venv/bin/lint-imports --no-cache
	.venv/bin/python -m pytest -ra

unit: bootstrap
	.venv/bin/python -m pytest tests/unit -q

integration: bootstrap
	.venv/bin/python -m pytest tests/integration -ra

# The masked call against plain Asterisk doing the same work, at 50 to 200
# calls at once (bench/paths.py; results go in bench/RESULTS.md by hand).
bench: bootstrap
	.venv/bin/python -m bench.paths $(BENCH_ARGS)

lock:
	@scripts/lock
