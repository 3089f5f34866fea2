#!/usr/bin/env bash
# nbdkit-remap fuzzers: (re)generates the metadata seed inputs of
# tests/fuzz/corpus/{metadata,load} from real images written by the
# filter itself.  Needs a built filter, nbdkit and python3-libnbd.
# The text seeds (lists, mapfiles, control lines) are kept by hand.
set -e
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
REMAP_FILTER=${REMAP_FILTER:-$top/filter/.libs/nbdkit-remap-filter.so}
BADSECTOR_FILTER=${BADSECTOR_FILTER:-$top/tests/badsector/.libs/nbdkit-badsector-filter.so}
PATH=/usr/bin:$PATH
NBDIO="/usr/bin/python3 $top/tests/crash/nbdio.py"
w=$(mktemp -d /tmp/remap-seeds.XXXXXX)
trap 'rm -rf "$w"' EXIT

# run IMG ARGS... -- writes: starts nbdkit, runs the nbdio writes given
# as OFFSET:LEN:BYTE words after --, stops it.
run ()
{
  local img=$1 sock=$w/s pid
  shift
  local args=() writes=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  writes=("$@")
  rm -f "$sock" "$w/pid"
  timeout 60 nbdkit -f -U "$sock" -P "$w/pid" "${args[@]}" >"$w/log" 2>&1 &
  for _ in $(seq 500); do [ -s "$w/pid" ] && break; sleep 0.01; done
  pid=$(cat "$w/pid")
  for wr in "${writes[@]}"; do
    IFS=: read -r off len byte <<<"$wr"
    $NBDIO write "$sock" "$off" "$len" "$byte" >/dev/null || true
  done
  kill -TERM "$pid"
  wait
}

# Internal, 512-byte sectors, 4 spares: 3 remapped sectors, one
# retired spare, two pending sectors from a mapfile.
img=$w/int.img
truncate -s 64K "$img"
: >"$w/bad"
printf '# Mapfile\n0x00000000 +\n0x00000000 0x00000C00 +\n0x00000C00 0x00000400 -\n0x00001000 0x00001000 +\n' >"$w/map"
run "$img" --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" file "$img" \
  badsector-file="$w/bad" badsector-sector-size=512 remap-sector-size=512 \
  remap-spare-size=2K remap-ddrescue="$w/map" -- 0:3072:41 4096:12288:41
hb=$(( 65536 - 4096 ))
spare0=$(( $(od -An -t u8 -j $((hb + 64)) -N 8 "$img") / 512 ))
printf 'write %d\nwrite 3\nwrite 10\nwrite 20\n' "$spare0" >"$w/bad"
run "$img" --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" file "$img" \
  badsector-file="$w/bad" badsector-sector-size=512 remap-sector-size=512 \
  remap-spare-size=2K -- 1536:512:51 5120:512:52 10240:512:53

# External, 4096-byte sectors, 2 spares, one remap.
ext=$w/ext.img
spare=$w/ext.spare
truncate -s 1M "$ext"
echo "write 7" >"$w/bad"
run "$ext" --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" file "$ext" \
  badsector-file="$w/bad" remap-spare="$spare" remap-spare-size=8K \
  -- 28672:4096:61

u64 () { od -An -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
u32 () { od -An -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
# copy FILE HEADER_OFFSET TABLE_OFFSET OUT: header slot + entries
copy ()
{
  local n
  n=$(u32 "$1" $(($2 + 152)))
  { dd if="$1" bs=1 skip="$2" count=4096 status=none
    dd if="$1" bs=1 skip="$3" count=$((n * 16)) status=none; } >"$4"
}
mkdir -p "$here/corpus/metadata" "$here/corpus/load"
hb=$(( 65536 - 4096 ))
copy "$img" "$(u64 "$img" $((hb + 88)))" "$(u64 "$img" $((hb + 104)))" \
  "$here/corpus/metadata/internal-512-copy-a"
copy "$img" "$hb" "$(u64 "$img" $((hb + 112)))" \
  "$here/corpus/metadata/internal-512-copy-b"
shb=$(( $(stat -c %s "$spare") - 4096 ))
copy "$spare" 0 "$(u64 "$spare" 104)" "$here/corpus/metadata/external-4096-copy-a"
# Load seeds: mode byte (bit 0 internal; sector size and spare count
# as the filter would pass them), then the whole store.
{ printf '\x01'; cat "$img"; } >"$here/corpus/load/internal-512-nohint"
{ printf '\x13'; cat "$img"; } >"$here/corpus/load/internal-512-hinted"
{ printf '\x00'; cat "$spare"; } >"$here/corpus/load/external-4096"
# Regression (issue 11 item 4): header A alone of a spare file for a
# 2 TiB disk, claiming 2^24 entries; a load used to allocate their
# 256 MiB table before reading past the end of the 4 KiB store.
truncate -s 2T "$w/big.img"
run "$w/big.img" --filter="$REMAP_FILTER" file "$w/big.img" \
  remap-spare="$w/big.spare" remap-spare-size=50% --
{ printf '\x00'; head -c 152 "$w/big.spare"; printf '\x00\x00\x00\x01'
  tail -c +157 "$w/big.spare" | head -c $((4096 - 156)); } \
  >"$here/corpus/load/forged-entry-count"
ls -l "$here/corpus/metadata" "$here/corpus/load"
