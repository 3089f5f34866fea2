#!/usr/bin/env bash
# The light torture run (issue 10): about a minute of random I/O from
# four threads against remap over failing sectors, with faults flipped
# at random, control-socket remap/unmap/sync and SIGKILLs, every read
# checked against the reference model, in internal and external mode,
# each with and without power cuts.  Fails on any violation.
# TORTURE_CLASSES (make check TORTURE_CLASSES=...) leaves fault classes
# out; TORTURE_LIGHT_SECONDS changes the length.
exec "$(dirname "$0")/run-torture.sh" light "${TORTURE_LIGHT_SECONDS:-54}"
