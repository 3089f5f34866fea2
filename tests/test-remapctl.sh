#!/usr/bin/env bash
# remapctl, the offline tool, against real tables written by the
# filter: show/dump, check and repair of damaged copies, add/pending/
# unmap, refusal while a server runs, ddrescue export (checked with
# nbdkit's own ddrescue filter) and import, format, external mode and
# NBD URIs.
_top=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
source "$_top/tests/functions.sh"
set -e
requires qemu-io nbdinfo python3 awk
: "${REMAPCTL:=$_top_dir/tools/remapctl}"
[ -x "$REMAPCTL" ] || fail "$REMAPCTL not found (run make first)"

ss=4096

# rc VAR CMD...: runs CMD with stdout in $tmp/out and stderr in
# $tmp/err, and puts its exit status in VAR, whatever it is.
rc ()
{
  local _var=$1 _r=0
  shift
  timeout 60 "$@" >"$tmp/out" 2>"$tmp/err" || _r=$?
  eval "$_var=\$_r"
}

# expect STATUS CMD...: the command must exit with STATUS.
expect ()
{
  local want=$1 got
  shift
  rc got "$@"
  if [ "$got" -ne "$want" ]; then
    echo "--- stdout:" >&2; cat "$tmp/out" >&2
    echo "--- stderr:" >&2; cat "$tmp/err" >&2
    fail "expected status $want, got $got: $*"
  fi
}

ctl ()
{
  expect 0 "$REMAPCTL" "$@"
}

# States of the sectors in the table, as "SECTOR:STATE ..." from dump.
states ()
{
  ctl "$@" dump --json
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%d:%s" % (e["sector"], e["state"])
               for e in d["list"]["entries"] if "sector" in e))
' "$tmp/out"
}

# reads SOCK SECTOR...: "ok" or "EIO" for a read of each whole sector,
# in one qemu-io run on a read-only connection.
reads ()
{
  local sock=$1 s args=()
  shift
  for s in "$@"; do args+=(-c "read $((s*ss)) $ss"); done
  timeout 30 qemu-io -r -f raw "$(uri "$sock")" "${args[@]}" 2>&1 |
    awk '/^read failed: Input\/output error/ { printf "EIO " }
         /^read [0-9]+\/[0-9]+ bytes/ { printf "ok " }
         /^read failed: / && !/Input\/output/ { printf "OTHER " }'
  echo
}

disk=$tmp/disk.img
list=$tmp/bad.txt
truncate -s 16M "$disk"

# ---- 1. A real table: the filter remaps sector 5, whose write fails.
echo "write 5" >"$list"
start_server sock "$tmp/log1" \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list"
size=$(export_size "$sock")
qio "$sock" -c "write -P 0x33 0 $((16*ss))"
stop_server "$sock"

# ---- 2. show and dump.
ctl --disk="$disk" show
grep -E '^ +5 +remapped +[0-9]+$' "$tmp/out" >/dev/null ||
  { cat "$tmp/out"; fail "show does not list sector 5 as remapped"; }
grep -q "Export size: *$size bytes" "$tmp/out" ||
  fail "show gives the wrong export size (expected $size)"
grep -q "1 used" "$tmp/out" || fail "show does not count the used spare"
[ "$(states --disk="$disk")" = "5:remapped" ] ||
  fail "dump --json: entries are '$(states --disk="$disk")'"
ctl --disk="$disk" dump --json
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
s = d["status"]
assert s["geometry"]["export_size"] == int(sys.argv[2]), s
assert s["spares"]["used"] == 1 and s["pending"] == 0, s
assert s["counters"]["remaps"] == 1, s
assert [c["valid"] for c in d["copies"]] == [True, True], d["copies"]
assert d["list"]["total"] == 1 and d["list"]["next"] is None
' "$tmp/out" "$size" || fail "dump --json has the wrong contents"

# ---- 3. check, and repair of one bad copy.
ctl --disk="$disk" check
grep -q healthy "$tmp/out" || fail "check does not say healthy"

hb=$(header_b "$disk")
ha=$(le_u64 "$disk" $((hb + 48)))      # region offset = header A
echo "header A at $ha, header B at $hb"
cp "$disk" "$tmp/good.img"
poke "$disk" $((ha + 200)) 'XXXX'
expect 1 "$REMAPCTL" --disk="$disk" check
grep -q "copy A.*bad" "$tmp/out" || { cat "$tmp/out"; fail "check does not name copy A"; }
grep -q "copy B.*valid" "$tmp/out" || fail "check does not call copy B valid"
grep -q "repair needed" "$tmp/out" || fail "check does not say repair needed"
ctl --disk="$disk" repair
grep -q "rewrote copy A" "$tmp/out" || fail "repair does not say it rewrote A"
ctl --disk="$disk" check
[ "$(states --disk="$disk")" = "5:remapped" ] || fail "repair changed the entries"

# Copy A bad again, and its header sector no longer takes writes (the
# disk served through the bad-sector source): copy B, the only valid
# copy, is not written over in place, so repair fails and header B is
# unchanged.
poke "$disk" $((ha + 200)) 'XXXX'
echo "write $((ha / ss))" >"$tmp/bad-header-a.txt"
start_server sock "$tmp/log-bad" --filter="$BADSECTOR_FILTER" file "$disk" \
  badsector-file="$tmp/bad-header-a.txt"
hb_before=$(dd if="$disk" bs=$ss skip=$((hb / ss)) count=1 2>/dev/null | md5sum)
expect 3 "$REMAPCTL" --uri="$(uri "$sock")" repair
grep -q "copy A .* could not be written, and copy B, the only valid copy, is not written over in place: nothing was changed" \
  "$tmp/err" || { cat "$tmp/err"; fail "repair does not say why it failed"; }
stop_server "$sock"
[ "$(dd if="$disk" bs=$ss skip=$((hb / ss)) count=1 2>/dev/null | md5sum)" \
  = "$hb_before" ] || fail "repair wrote copy B, the only valid copy, in place"
ctl --disk="$disk" repair

# Header B lost entirely: copy A is found where the defaults put it.
dd if=/dev/zero of="$disk" bs=$ss seek=$((hb / ss)) count=1 conv=notrunc \
   status=none
expect 1 "$REMAPCTL" --disk="$disk" check
grep -q "copy B.*bad" "$tmp/out" || fail "check does not name copy B"
ctl --disk="$disk" repair
ctl --disk="$disk" check

# Both copies bad: damaged, and repair refuses without writing.
poke "$disk" $((ha + 200)) 'XXXX'
poke "$disk" $((hb + 200)) 'XXXX'
md5=$(file_md5 "$disk")
expect 2 "$REMAPCTL" --disk="$disk" check
grep -q damaged "$tmp/out" || fail "check does not say damaged"
expect 2 "$REMAPCTL" --disk="$disk" repair
grep -q "refusing" "$tmp/err" || fail "repair of a damaged table does not refuse"
[ "$(file_md5 "$disk")" = "$md5" ] || fail "repair wrote to a damaged table"
expect 2 "$REMAPCTL" --disk="$disk" show
cp "$tmp/good.img" "$disk"

# ---- 4. add, pending, unmap.
ctl --disk="$disk" add 9
ctl --disk="$disk" pending 11
[ "$(states --disk="$disk")" = "5:remapped 9:remapped 11:pending" ] ||
  fail "after add 9, pending 11: '$(states --disk="$disk")'"
# Sector 9's data now lives in its spare: change the original under it
# and the filter must still serve the copy.
poke "$disk" $((9*ss)) 'ZZZZ'
start_server sock "$tmp/log2" --filter="$REMAP_FILTER" file "$disk"
qio "$sock" -c "read -P 0x33 $((9*ss)) $ss"
stop_server "$sock"
ctl --disk="$disk" unmap 9
bytes_all "$disk" $((9*ss)) $ss 33 ||
  fail "unmap 9 did not copy the spare's data back to sector 9"
expect 3 "$REMAPCTL" --disk="$disk" unmap 11    # pending, not remapped
expect 3 "$REMAPCTL" --disk="$disk" unmap 7     # not in the table
expect 3 "$REMAPCTL" --disk="$disk" add 999999  # past the end
ctl --disk="$disk" show
grep -E '^ +11 +pending' "$tmp/out" >/dev/null || fail "show: 11 not pending"
if grep -E '^ +9 +remapped' "$tmp/out" >/dev/null; then
  fail "show: 9 still remapped after unmap"
fi
[ "$(states --disk="$disk")" = "5:remapped 11:pending" ] ||
  fail "after unmap 9: '$(states --disk="$disk")'"

# ---- 5. Refusal while a server uses the table.
start_server sock "$tmp/log3" --filter="$REMAP_FILTER" file "$disk"
rc r "$REMAPCTL" --disk="$disk" add 3
cat "$tmp/err"
[ "$r" -eq 3 ] || fail "add while the server runs: status $r, expected 3"
grep -q "in use by another nbdkit or remapctl (it is locked); stop that one first" \
  "$tmp/err" || fail "add while the server runs: no in-use message"
rc r "$REMAPCTL" --disk="$disk" format --force
[ "$r" -eq 3 ] || fail "format --force while the server runs: status $r"
ctl --disk="$disk" show         # reading still works, with a warning
grep -q "warning: .*in use" "$tmp/err" || fail "show gives no in-use warning"
stop_server "$sock"
[ "$(states --disk="$disk")" = "5:remapped 11:pending" ] ||
  fail "the refused add changed the table"

# ---- 6. export-ddrescue, checked by nbdkit's ddrescue filter.
ctl --disk="$disk" add 20-21
ctl --disk="$disk" export-ddrescue
cp "$tmp/out" "$tmp/disk.map"
cat "$tmp/disk.map"
grep -v '^#' "$tmp/disk.map" | sed -n 1p | grep -Eq '^0x0+ +\+ +1$' ||
  fail "bad status line"
# Contiguous, non-overlapping lines covering the export exactly.
grep -v '^#' "$tmp/disk.map" | sed 1d | {
  pos=0; bad=""
  while read -r p s st; do
    [ $((p)) -eq $pos ] || fail "mapfile line at $p, expected $pos"
    [ "$st" = "-" ] && bad="$bad $((p / ss))+$((s / ss))"
    pos=$((p + s))
  done
  [ $pos -eq "$size" ] || fail "mapfile covers $pos bytes, not $size"
  [ "$bad" = " 5+1 11+1 20+2" ] || fail "bad areas are '$bad'"
}
start_server sock "$tmp/log4" --filter=ddrescue file "$disk" \
  ddrescue-mapfile="$tmp/disk.map"
got=$(reads "$sock" 4 5 6 10 11 12 19 20 21 22 0 100)
echo "reads: $got"
[ "$got" = "ok EIO ok ok EIO ok ok EIO EIO ok ok ok " ] ||
  fail "ddrescue filter reads were '$got'"
stop_server "$sock"

# ---- 7. import-ddrescue of a hand-written mapfile, then export.
fresh=$tmp/fresh.img
truncate -s 16M "$fresh"
ctl --disk="$fresh" format
cat >"$tmp/in.map" <<'EOF'
# Mapfile. Created by hand
# current_pos  current_status  current_pass
0x00000000     ?               1
#      pos        size  status
0x00000000  0x00002000  +
0x00002000  0x00001000  -
0x00003000  0x0000D000  +
0x00010000  0x00003000  -
0x00013000  0x00001000  /
0x00014000  0x0001C200  +
0x00030200  0x00000100  -
0x00030300  0x00FCFD00  +
EOF
ctl --disk="$fresh" import-ddrescue "$tmp/in.map"
[ "$(states --disk="$fresh")" = "2:pending 16:pending 17:pending 18:pending 48:pending" ] ||
  fail "import-ddrescue: '$(states --disk="$fresh")'"
ctl --disk="$fresh" export-ddrescue
got=$(grep -v '^#' "$tmp/out" | awk '$3 == "-" { printf "%s %s;", $1, $2 }')
[ "$got" = "0x00002000 0x00001000;0x00010000 0x00003000;0x00030000 0x00001000;" ] ||
  fail "export after import gives bad areas '$got'"
# Re-importing the export changes nothing.
cp "$tmp/out" "$tmp/round.map"
ctl --disk="$fresh" import-ddrescue "$tmp/round.map"
[ "$(states --disk="$fresh")" = "2:pending 16:pending 17:pending 18:pending 48:pending" ] ||
  fail "re-import changed the table"
printf '0x0 +\n0x0 0x1000 X\n' >"$tmp/broken.map"
expect 3 "$REMAPCTL" --disk="$fresh" import-ddrescue "$tmp/broken.map"
grep -q "line 2" "$tmp/err" || fail "a bad mapfile does not name its line"

# ---- 8. format: refuses data and existing tables without --force.
expect 3 "$REMAPCTL" --disk="$fresh" format        # already formatted
grep -q -- "--force" "$tmp/err" || fail "format refusal does not hint --force"
data=$tmp/data.img
head -c 16M /dev/urandom >"$data"
md5=$(file_md5 "$data")
expect 3 "$REMAPCTL" --disk="$data" check           # no metadata
expect 3 "$REMAPCTL" --disk="$data" format
[ "$(file_md5 "$data")" = "$md5" ] || fail "a refused format wrote to the disk"
ctl --disk="$data" format --force --spare-size=128K
grep -q "32 spare sectors" "$tmp/out" || fail "format ignored --spare-size"
ctl --disk="$data" check
[ "$(states --disk="$data")" = "" ] || fail "a new table is not empty"

# ---- 9. External mode.
ext=$tmp/ext.img
spare=$tmp/ext.spare
head -c 8M /dev/zero | tr '\0' '\104' >"$ext"      # all 0x44
expect 3 "$REMAPCTL" --spare="$spare" format        # needs the data disk
ctl --spare="$spare" --disk="$ext" format
[ -s "$spare" ] || fail "format did not create the spare file"
expect 3 "$REMAPCTL" --spare="$spare" add 4         # needs the data disk
ctl --spare="$spare" --disk="$ext" add 4
ctl --spare="$spare" pending 6
[ "$(states --spare="$spare")" = "4:remapped 6:pending" ] ||
  fail "external: '$(states --spare="$spare")'"
poke "$ext" $((4*ss)) 'ZZZZ'
start_server sock "$tmp/log5" --filter="$REMAP_FILTER" file "$ext" \
  remap-spare="$spare"
[ "$(export_size "$sock")" -eq $((8*1024*1024)) ] ||
  fail "external mode export is not the whole disk"
qio "$sock" -c "read -P 0x44 $((4*ss)) $ss"
rc r "$REMAPCTL" --spare="$spare" pending 3
[ "$r" -eq 3 ] && grep -q "in use by" "$tmp/err" ||
  fail "external: pending while the server runs was not refused ($r)"
stop_server "$sock"
ctl --spare="$spare" check

# ---- 10. A disk served by nbdkit without the filter.
start_server sock "$tmp/log6" file "$fresh"
ctl --uri="$(uri "$sock")" check
ctl --uri="$(uri "$sock")" add 30
ctl --uri="$(uri "$sock")" show
grep -E '^ +30 +remapped' "$tmp/out" >/dev/null || fail "--uri: add 30 not shown"
stop_server "$sock"
ctl --disk="$fresh" show
grep -E '^ +30 +remapped' "$tmp/out" >/dev/null ||
  fail "--uri: add 30 not on the image"

# ---- 11. Usage.
ctl --help
grep -q export-ddrescue "$tmp/out" || fail "--help does not list subcommands"
ctl add --help
expect 3 "$REMAPCTL" nosuch
expect 3 "$REMAPCTL" check

echo "$test_name: PASS"
