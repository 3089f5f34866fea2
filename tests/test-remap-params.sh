#!/usr/bin/env bash
# Proves that every malformed or impossible remap-* parameter stops
# nbdkit with a non-zero exit and a message that names the parameter,
# and that a refused start writes nothing to the image.  A few valid
# spellings are checked to be accepted, so the refusals are not just
# "everything fails".
source "$(dirname "$0")/functions.sh"
set -e

disk=$tmp/disk.img
truncate -s 64M "$disk"
disk_size=$(stat -c %s "$disk")
failures=0

# bad NAME=VALUE [WORD]: refused, and the message contains WORD
# (default: NAME).
bad ()
{
  local param=$1 word=${2:-${1%%=*}} log=$tmp/log r=0
  run_refused "$log" --filter="$REMAP_FILTER" file "$disk" "$param" || r=$?
  if [ $r -eq 0 ]; then
    echo "FAIL: $param was accepted (exit 0)"
    failures=$((failures + 1))
  elif ! grep -qF -- "$word" "$log"; then
    echo "FAIL: $param refused (exit $r) but the message does not name $word:"
    sed 's/^/    /' "$log"
    failures=$((failures + 1))
  else
    echo "ok: $param refused (exit $r): $(grep -m1 error "$log")"
  fi
  if ! cmp -s -n "$disk_size" "$disk" /dev/zero ||
     [ "$(stat -c %s "$disk")" -ne "$disk_size" ]; then
    fail "refusing $param modified the image"
  fi
}

bad remap-sector-size=1000
bad remap-sector-size=256
bad remap-sector-size=131072
bad remap-sector-size=abc
bad remap-sector-size=0
bad remap-spare-size=0
bad remap-spare-size=-1
bad remap-spare-size=abc
bad remap-spare-size=0%
bad remap-spare-size=60%
bad remap-spare-size=1.234%
bad remap-spare-size=%
bad remap-spare-size=1G                 # bigger than the 64M disk
bad remap-spare-size=64M                # the whole disk: no data left
bad remap-spare-size=10X
bad remap-sector-size=4096x
bad remap-format=maybe
bad remap-bogus=1
bad remap-spare=

# Every other parameter, with each kind of bad value it can get: not a
# number, out of range, malformed list, empty or unusable file name,
# a file that is not what it should be.
printf 'not a sector list\n' >"$tmp/garbage"
bad remap-add=abc
bad remap-add=5-3
bad remap-add=1,,2
bad remap-add=99999999999               # past the end of the disk
bad remap-add-file=
bad remap-add-file="$tmp/missing"
bad remap-add-file="$tmp/garbage"
bad remap-ddrescue=
bad remap-ddrescue="$tmp/missing"
bad remap-ddrescue="$tmp/garbage"
bad remap-control=
bad remap-control="$tmp/no-such-dir/ctl.sock"
bad remap-metrics-file=
bad remap-metrics-file="$tmp/no-such-dir/metrics"
bad remap-pending-partial=maybe
bad remap-read-retries=-1
bad remap-read-retries=abc
bad remap-read-retries=1000000
bad remap-storm-limit=abc
bad remap-storm-limit=-5
bad remap-verify=perhaps
bad remap-write-through=always
bad remap-plugin-cache=maybe
bad remap-warn=abc
bad remap-warn=150%
bad remap-warn=90%,75%
bad remap-warn=0%

# The image is still all zeros and unallocated.
[ "$(du -k "$disk" | cut -f1)" -eq 0 ] || echo "note: image has allocated blocks"
cmp -s -n "$disk_size" "$disk" /dev/zero || fail "the image was written"

# Valid spellings are accepted (each of these formats a fresh image).
good ()
{
  local r=0 img=$tmp/good.img
  rm -f "$img"; truncate -s 64M "$img"
  run_refused "$tmp/glog" --filter="$REMAP_FILTER" file "$img" "$@" || r=$?
  if [ $r -ne 0 ]; then
    echo "FAIL: $* refused (exit $r):"; cat "$tmp/glog"
    failures=$((failures + 1))
  else
    echo "ok: $* accepted"
  fi
}
good remap-sector-size=512
good remap-sector-size=65536
good remap-spare-size=0.25%
good remap-spare-size=50%
good remap-spare-size=1M
good remap-format=yes
good remap-format=no
good remap-read-retries=0
good remap-warn=none
good remap-verify=yes remap-pending-partial=zero remap-storm-limit=0
good remap-write-through=yes remap-plugin-cache=no

[ $failures -eq 0 ] || fail "$failures parameter checks failed"
echo "$test_name: PASS"
