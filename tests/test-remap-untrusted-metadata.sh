#!/usr/bin/env bash
# Proves that a forged spare file cannot make the filter or remapctl
# allocate what its header claims: a 4 KiB spare file holding only a
# header A whose geometry (for a 2 TiB disk) is genuine but whose
# entry count says 16 Mi entries (a 256 MiB table, read before its
# checksum) is refused at once by remapctl check and by nbdkit --run,
# with a message that the metadata lies past the end of the file, and
# neither process grows past 64 MiB (before the fix remapctl check
# reached 262 MiB).  remapctl check and the filter load through
# the same function, remap_metadata_load.  A spare file cut short into
# its spares is refused the same way instead of reading them as zeros.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo
[ -x /usr/bin/time ] || skip "GNU time (/usr/bin/time) is not installed"
remapctl=$_top_dir/tools/remapctl
limit_kb=$((64 * 1024))

# A genuine header A: format a spare file for a sparse 2 TiB disk.
disk=$tmp/disk.img
truncate -s 2T "$disk"
spare=$tmp/genuine.spare
start_server sock "$tmp/log0" --filter="$REMAP_FILTER" file "$disk" \
  remap-spare="$spare" remap-spare-size=50%
stop_server "$sock"

# The forgery: its first 4 KiB with the entry count raised.
forged=$tmp/forged.spare
head -c 4096 "$spare" >"$forged"
chmod 600 "$forged"
poke "$forged" 152 '\x00\x00\x00\x01'         # 2^24 entries
[ "$(le_u32 "$forged" 152)" -eq 16777216 ] || fail "poke failed"

# max_rss_kb LOG CMD...: runs CMD, prints its peak resident size (KiB,
# of CMD and every process it waited for); CMD's output goes to LOG.
max_rss_kb ()
{
  local log=$1 r=0
  shift
  /usr/bin/time -f 'maxrss %M' -o "$log.rss" "$@" >"$log" 2>&1 || r=$?
  echo "$r" >"$log.rc"
  sed -n 's/^maxrss //p' "$log.rss"
}

# 1. remapctl check.
rss=$(max_rss_kb "$tmp/log1" timeout 60 "$remapctl" --spare="$forged" check)
cat "$tmp/log1"; echo "remapctl check: status $(cat "$tmp/log1.rc"), peak ${rss} KiB"
[ "$(cat "$tmp/log1.rc")" -eq 2 ] || fail "remapctl check did not call it damaged"
[ "$(cat "$tmp/log1.rc")" -ne 124 ] || fail "remapctl check timed out"
grep -q "past the end" "$tmp/log1" || fail "remapctl: no past-the-end message"
[ "$rss" -lt $limit_kb ] || fail "remapctl check grew to $rss KiB"

# 2. The filter, under --run.
rss=$(max_rss_kb "$tmp/log2" timeout 60 nbdkit -U "$tmp/run.sock" \
        --filter="$REMAP_FILTER" file "$disk" remap-spare="$forged" \
        --run 'nbdinfo --size "$uri"')
cat "$tmp/log2"; echo "nbdkit: status $(cat "$tmp/log2.rc"), peak ${rss} KiB"
[ "$(cat "$tmp/log2.rc")" -ne 0 ] || fail "nbdkit served a forged spare file"
[ "$(cat "$tmp/log2.rc")" -ne 124 ] || fail "nbdkit timed out"
grep -q "past the end" "$tmp/log2" || fail "nbdkit: no past-the-end message"
[ "$rss" -lt $limit_kb ] || fail "nbdkit grew to $rss KiB"

# 3. A genuine spare file cut short into its spares (and copy B gone).
short=$tmp/short.spare
cp --sparse=always "$spare" "$short"
truncate -s 1M "$short"
r=0; "$remapctl" --spare="$short" check >"$tmp/log3" 2>&1 || r=$?
cat "$tmp/log3"
[ $r -eq 2 ] || fail "remapctl check accepted a truncated spare file (status $r)"
grep -q "past the end" "$tmp/log3" || fail "no past-the-end message for a short file"
echo "$test_name: PASS"
