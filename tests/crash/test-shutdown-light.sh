#!/usr/bin/env bash
# make check: the shutdown cycles, light (SHUTDOWN_LIGHT_CYCLES cycles,
# default 20, then the slow-plugin cases).  `make check-crash` runs 100.
exec "$(dirname "$0")/test-shutdown-cycles.sh" "${SHUTDOWN_LIGHT_CYCLES:-20}"
