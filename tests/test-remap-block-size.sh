#!/usr/bin/env bash
# Proves the block sizes the filter advertises: minimum 512 (or the
# plugin's larger minimum), preferred the remap sector size, maximum the
# plugin's; and that a client that obeys them (qemu-io) turns a 1-byte
# write into a whole 512-byte block before it reaches the plugin.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo qemu-io

disk=$tmp/disk.img
disk16=$tmp/disk16.img
truncate -s 64M "$disk" "$disk16"

# Prints "minimum preferred maximum" of the export on $1.
sizes ()
{
  timeout 30 nbdinfo --json "$(uri "$1")" |
    awk -F'[:,]' '/block_size_(minimum|preferred|maximum)/ { gsub(/[ \t]/, "", $2); printf "%s ", $2 }'
}

# 1. A plugin without constraints: 512, the sector size, no maximum.
start_server sock "$tmp/log" -v --filter="$REMAP_FILTER" \
  --filter=log file "$disk" logfile="$tmp/plugin.log"
[ "$(sizes "$sock")" = "512 4096 4294967295 " ] ||
  fail "block sizes: $(sizes "$sock")"
qio "$sock" -c "write -P 0x11 100 1"
grep -q 'Write .*offset=0x0 count=0x200 ' "$tmp/plugin.log" ||
  fail "a 1-byte write did not reach the plugin as one 512-byte block: $(grep Write "$tmp/plugin.log")"
stop_server "$sock"

# 2. A plugin with its own constraints (the policy filter stands in for
#    it): its larger minimum and its maximum are kept, and the preferred
#    size is the sector size, cut to the maximum.
start_server sock "$tmp/log2" -v --filter="$REMAP_FILTER" \
  --filter=blocksize-policy file "$disk16" remap-sector-size=16k \
  blocksize-minimum=1024 blocksize-preferred=1024 blocksize-maximum=8192
[ "$(sizes "$sock")" = "1024 8192 8192 " ] ||
  fail "block sizes over a constrained plugin: $(sizes "$sock")"
stop_server "$sock"

# 3. The same plugin with a larger maximum: the sector size is preferred.
start_server sock "$tmp/log3" -v --filter="$REMAP_FILTER" \
  --filter=blocksize-policy file "$disk16" \
  blocksize-minimum=1024 blocksize-preferred=1024 blocksize-maximum=65536
[ "$(sizes "$sock")" = "1024 16384 65536 " ] ||
  fail "block sizes over a constrained plugin: $(sizes "$sock")"
stop_server "$sock"
