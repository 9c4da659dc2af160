# Local development entry points. See emulators/up for the emulator details.
#
#   make run             build and run local-server against the emulators (Ctrl-C stops all)
#   make test            the whole suite on the emulators: cargo tests, browser tests, API contract, doc examples
#   make emulators       start the emulators; prints `export` lines: eval "$(make -s emulators)"
#   make emulators-down  stop them
#   make lint            rustfmt check and clippy with warnings as errors
#   make bench           every benchmark side by side; writes bench/results/RESULTS.md (minutes)

SHELL := bash
.DEFAULT_GOAL := help

# Extra arguments for cargo test, e.g. make test ARGS='-- --nocapture'
ARGS ?=

.PHONY: help run test bench emulators emulators-down lint check-cargo check-lint-tools check-python

help:
	@sed -n 's/^#   //p' Makefile

run: check-cargo check-python
	@scripts/run-local

test: check-cargo check-python
	@scripts/test $(ARGS)

bench: check-cargo check-python
	@bench/run

emulators: check-python
	@emulators/up

emulators-down:
	@emulators/down

lint: check-cargo check-lint-tools
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# --- what the targets need; nothing here can be fetched, so fail clearly -----

check-cargo:
	@command -v cargo >/dev/null 2>&1 || { \
	  echo "error: cargo not found. Install the Rust toolchain with rustup (https://rustup.rs)" \
	       "and make sure ~/.cargo/bin is on PATH." >&2; exit 1; }

check-lint-tools: check-cargo
	@cargo fmt --version >/dev/null 2>&1 || { \
	  echo "error: rustfmt missing: rustup component add rustfmt" >&2; exit 1; }
	@cargo clippy --version >/dev/null 2>&1 || { \
	  echo "error: clippy missing: rustup component add clippy" >&2; exit 1; }

# Python 3.13 (from pyenv) builds the emulators' venv; not needed when both
# endpoints are already given (e.g. emulators run with docker compose).
check-python:
	@if [[ -z "$${AWS_ENDPOINT_URL_S3:-}" || -z "$${AWS_ENDPOINT_URL_DYNAMODB:-}" ]]; then \
	  emulators/up --check; fi

# --- deployment ---------------------------------------------------------------
#   make deploy-check    sam validate --lint and a Docker-free sam build of template.yaml (minutes: release builds)

.PHONY: deploy-check

deploy-check: check-cargo
	@deploy/check
