#!/usr/bin/env bash
# make check: the crash test, light (run-crash.sh, CRASH_LIGHT_CYCLES
# cycles, default 50).  `make check-crash` runs 1000.
exec "$(dirname "$0")/run-crash.sh" "${CRASH_LIGHT_CYCLES:-50}"
