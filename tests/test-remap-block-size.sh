#!/usr/bin/env bash
# Proves the block sizes the filter advertises: minimum 512 (or the
# plugin's larger minimum), preferred the remap sector size, maximum the
# plugin's; and that a client that obeys them (qemu-io) turns a 1-byte
# write into a whole 512-byte block before it reaches the plugin; and
# that a plugin whose minimum is larger than the remap sector size is
# refused with a message, not met with EINVAL later.
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

# 4. A plugin whose minimum is larger than the remap sector size could
#    not take one sector: the filter refuses to start and says which
#    sector size would do, for a new table and for an existing one
#    (formatted with 512-byte sectors over a plugin that took them).
disk512=$tmp/disk512.img
truncate -s 64M "$disk512"
for table in new existing; do
  if [ $table = existing ]; then
    start_server sock "$tmp/log4f" --filter="$REMAP_FILTER" file "$disk512" \
      remap-sector-size=512
    stop_server "$sock"
    args=()
  else
    args=(remap-sector-size=512)
  fi
  r=0
  run_refused "$tmp/log4-$table" --filter="$REMAP_FILTER" \
    --filter=blocksize-policy file "$disk512" "${args[@]}" \
    blocksize-minimum=4096 blocksize-error-policy=error || r=$?
  [ $r -ne 0 ] || fail "case 4 ($table table): started over a plugin whose minimum block is larger than a sector"
  grep -q "minimum block size is 4096 bytes.*remap-sector-size=4096" \
    "$tmp/log4-$table" ||
    fail "case 4 ($table table): the refusal does not say why: $(grep error: "$tmp/log4-$table")"
done
