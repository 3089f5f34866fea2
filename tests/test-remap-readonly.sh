#!/usr/bin/env bash
# Proves a read-only server never writes, however -r is spelled: nbdkit
# accepts -r, -rf, -fr, -rU SOCK, --readonly, --read-only and the
# abbreviation --reado, and for each of them the image is left
# byte-identical when it is blank (the filter refuses, the client gets
# an error instead of waiting), when one metadata copy is damaged (it
# serves from the other and does not repair), with remap-add (it
# refuses), and a spare file that does not exist is not created.  A writable server over the same images does format,
# repair and remap, so each check can see a write.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo

# ro_run SPELLING IMAGE LOG PARAMS...: nbdkit -r (spelled SPELLING)
# with the filter (and its PARAMS) over IMAGE, one nbdinfo under --run;
# prints its status.
ro_run ()
{
  local spelling=$1 img=$2 log=$3 sock=$tmp/ro.sock r=0 opts
  shift 3
  rm -f "$sock"
  case $spelling in
    -rU) opts=(-rU "$sock") ;;
    *) opts=("$spelling" -U "$sock") ;;
  esac
  timeout $(( $(scaled_ms 20000) / 1000 )) \
    nbdkit "${opts[@]}" --filter="$REMAP_FILTER" file "$img" "$@" \
      --run 'nbdinfo --size "$uri"' >"$log" 2>&1 || r=$?
  echo $r
}

# A formatted image with one copy damaged: copy A's header counter.
formatted=$tmp/formatted.img
truncate -s 64M "$formatted"
start_server sock "$tmp/log-format" --filter="$REMAP_FILTER" file "$formatted"
stop_server "$sock"
hb=$(header_b "$formatted")
ha=$(le_u64 "$formatted" $((hb + 48)))
damaged=$tmp/damaged.img
cp "$formatted" "$damaged"
poke "$damaged" $((ha + 200)) '\xde\xad\xbe\xef'

for spelling in -r -rf -fr -rU --readonly --read-only --reado; do
  echo "== nbdkit $spelling"

  # 1. Blank: refused, not formatted.
  img=$tmp/blank.img
  rm -f "$img"; truncate -s 64M "$img"
  before=$(file_md5 "$img")
  r=$(ro_run "$spelling" "$img" "$tmp/log1")
  cat "$tmp/log1"
  [ "$r" -ne 0 ] || fail "$spelling: a blank disk was served read-only"
  [ "$r" -ne 124 ] || fail "$spelling: the --run command timed out"
  grep -q "read-only" "$tmp/log1" || fail "$spelling: no read-only message"
  [ "$(file_md5 "$img")" = "$before" ] || fail "$spelling: the blank image was written"

  # 2. One damaged copy: served from the other, not repaired.
  img=$tmp/damaged-copy.img
  cp "$damaged" "$img"
  before=$(file_md5 "$img")
  r=$(ro_run "$spelling" "$img" "$tmp/log2")
  cat "$tmp/log2"
  [ "$r" -eq 0 ] || fail "$spelling: the damaged-copy image was not served"
  grep -q "needs repair" "$tmp/log2" || fail "$spelling: no needs-repair warning"
  [ "$(file_md5 "$img")" = "$before" ] || fail "$spelling: the damaged copy was repaired"

  # 3. remap-add: refused, nothing remapped.
  img=$tmp/add.img
  cp "$formatted" "$img"
  before=$(file_md5 "$img")
  r=$(ro_run "$spelling" "$img" "$tmp/log3" remap-add=5)
  cat "$tmp/log3"
  [ "$r" -ne 0 ] || fail "$spelling: remap-add was accepted read-only"
  [ "$r" -ne 124 ] || fail "$spelling: the --run command timed out"
  grep -q "need a writable disk" "$tmp/log3" || fail "$spelling: no remap-add message"
  [ "$(file_md5 "$img")" = "$before" ] || fail "$spelling: remap-add wrote the image"

  # 4. A spare file that does not exist yet: refused, not created.
  img=$tmp/blank.img
  rm -f "$tmp/new.spare"
  r=$(ro_run "$spelling" "$img" "$tmp/log4" remap-spare="$tmp/new.spare")
  cat "$tmp/log4"
  [ "$r" -ne 0 ] || fail "$spelling: served without a spare file"
  [ "$r" -ne 124 ] || fail "$spelling: the --run command timed out"
  grep -q "new.spare" "$tmp/log4" || fail "$spelling: no message naming the spare file"
  ! grep -q "cannot open plugin" "$tmp/log4" || fail "$spelling: bad nbdkit command line"
  [ ! -e "$tmp/new.spare" ] || fail "$spelling: the spare file was created"
done

# Writable, the same three images are written: the checks above see
# writes when there are some.
img=$tmp/blank.img
rm -f "$img"; truncate -s 64M "$img"
before=$(file_md5 "$img")
start_server sock "$tmp/log4" --filter="$REMAP_FILTER" file "$img"
stop_server "$sock"
[ "$(file_md5 "$img")" != "$before" ] || fail "a writable server did not format"

img=$tmp/damaged-copy.img
cp "$damaged" "$img"
before=$(file_md5 "$img")
start_server sock "$tmp/log5" --filter="$REMAP_FILTER" file "$img"
stop_server "$sock"
grep -q "repairing" "$tmp/log5" || fail "a writable server did not repair"
[ "$(file_md5 "$img")" != "$before" ] || fail "the repair wrote nothing"

img=$tmp/add.img
cp "$formatted" "$img"
before=$(file_md5 "$img")
start_server sock "$tmp/log6" --filter="$REMAP_FILTER" file "$img" remap-add=5
stop_server "$sock"
[ "$(file_md5 "$img")" != "$before" ] || fail "remap-add wrote nothing"
echo "$test_name: PASS"
