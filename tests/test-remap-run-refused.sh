#!/usr/bin/env bash
# Proves that every kind of refusal ends nbdkit --run promptly instead
# of leaving the command's client waiting for a handshake: refusals of
# the parameters, of paths and of a damaged spare file (before nbdkit forks: the
# command never runs), of what is on the disk (after the fork, before
# any client) and of what a read-only server cannot do (at the first
# client).  Each nbdkit --run 'nbdinfo' exits
# non-zero, with the message, well inside its time limit (a hang shows
# as status 124); the images are not written.  A foreground server
# refusing at its first client exits non-zero too.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo

# refused_run WHEN LOG MESSAGE IMAGE NBDKIT-ARGS...: nbdkit --run
# nbdinfo must fail (not time out), print MESSAGE and leave IMAGE
# unchanged.  WHEN is "before" if the refusal must come before the
# fork (the command never runs), "after" if it cannot.
refused_run ()
{
  local when=$1 log=$2 msg=$3 img=$4 sock=$tmp/run.sock before r=0
  shift 4
  before=$(file_md5 "$img")
  rm -f "$sock" "$tmp/ran"
  timeout $(( $(scaled_ms 10000) / 1000 )) \
    nbdkit -U "$sock" "$@" \
      --run "touch $tmp/ran; nbdinfo --size \"\$uri\"" >"$log" 2>&1 || r=$?
  cat "$log"
  [ $r -ne 124 ] || fail "nbdkit --run hung after refusing ($*)"
  [ $r -ne 0 ] || fail "nbdkit --run exited with status 0 ($*)"
  grep -q -- "$msg" "$log" || fail "no \"$msg\" in the log ($*)"
  ! grep -q "accept:" "$log" || fail "nbdkit spun on a shut-down socket ($*)"
  [ "$(file_md5 "$img")" = "$before" ] || fail "$img was written ($*)"
  if [ "$when" = before ] && [ -e "$tmp/ran" ]; then
    fail "the --run command ran although nbdkit could refuse first ($*)"
  fi
}

blank=$tmp/blank.img
truncate -s 64M "$blank"
formatted=$tmp/formatted.img
truncate -s 64M "$formatted"
start_server sock "$tmp/log-format" --filter="$REMAP_FILTER" file "$formatted"
stop_server "$sock"

# 1. Before the fork: a bad parameter, a control socket that cannot be
#    made, a spare file whose metadata is damaged.
refused_run before "$tmp/log1" "remap-spare-size" "$blank" \
  --filter="$REMAP_FILTER" file "$blank" remap-spare-size=lots
refused_run before "$tmp/log2" "remap-control" "$blank" \
  --filter="$REMAP_FILTER" file "$blank" remap-control="$tmp/no/such/dir/s"
refused_run before "$tmp/log2a" "remap-metrics-file" "$blank" \
  --filter="$REMAP_FILTER" file "$blank" \
  remap-metrics-file="$tmp/no/such/dir/remap.prom"
bad_spare=$tmp/bad.spare
start_server sock "$tmp/log-spare" --filter="$REMAP_FILTER" file "$blank" \
  remap-spare="$bad_spare"
stop_server "$sock"
poke "$bad_spare" 200 '\xde\xad\xbe\xef'
poke "$bad_spare" $(( $(header_b "$bad_spare") + 200 )) '\xde\xad\xbe\xef'
refused_run before "$tmp/log2b" "damaged" "$bad_spare" \
  --filter="$REMAP_FILTER" file "$blank" remap-spare="$bad_spare"

# 2. After the fork, before any client (these need the disk): data
#    where the region would go, both copies damaged, a resized disk,
#    remap-add past the end, a
#    spare file holding data (telling data from blank needs the layout,
#    which needs the disk's size).
data=$tmp/data.img
truncate -s 64M "$data"
dd if=/dev/urandom of="$data" bs=1M seek=62 count=2 conv=notrunc status=none
refused_run after "$tmp/log3" "holds data" "$data" \
  --filter="$REMAP_FILTER" file "$data"

broken=$tmp/broken.img
cp "$formatted" "$broken"
hb=$(header_b "$broken")
ha=$(le_u64 "$broken" $((hb + 48)))
poke "$broken" $((ha + 200)) '\xde\xad\xbe\xef'
poke "$broken" $((hb + 200)) '\xde\xad\xbe\xef'
refused_run after "$tmp/log4" "damaged" "$broken" \
  --filter="$REMAP_FILTER" file "$broken"

grown=$tmp/grown.img
cp "$formatted" "$grown"
truncate -s 65M "$grown"
refused_run after "$tmp/log5" "was it grown" "$grown" \
  --filter="$REMAP_FILTER" file "$grown" remap-control="$tmp/ctl5"
# nbdkit exits without the filter's cleanup here: the control socket
# bound before the fork is removed by the refusal itself.
[ ! -e "$tmp/ctl5" ] || fail "the control socket outlived a refused start"

# A disk in use by another server is refused before the fork: the
# store lock is taken before anything is read.
start_server sock "$tmp/log-holder" --filter="$REMAP_FILTER" file "$formatted"
refused_run before "$tmp/log5a" "in use" "$formatted" \
  --filter="$REMAP_FILTER" file "$formatted"
stop_server "$sock"

refused_run after "$tmp/log6" "past the end" "$formatted" \
  --filter="$REMAP_FILTER" file "$formatted" remap-add=99999999
# A sector inside the blank disk but past the export that its region
# would leave (the first sector of the region: the layout is the one
# the same disk size gave $formatted): refused against that layout,
# before the format writes the region (the image stays blank).
export_sectors=$(( $(le_u64 "$formatted" $(( $(header_b "$formatted") + 48 ))) / 4096 ))
refused_run after "$tmp/log6a" "past the end" "$blank" \
  --filter="$REMAP_FILTER" file "$blank" remap-add=$export_sectors

spare=$tmp/spare.bin
head -c 1M /dev/urandom >"$spare"
chmod 600 "$spare"
refused_run after "$tmp/log7" "not remap metadata" "$spare" \
  --filter="$REMAP_FILTER" file "$blank" remap-spare="$spare"

# As root, with another account (nobody): a refusal after nbdkit -u
# dropped privileges still ends --run (the server can no longer look
# at its root parent in /proc); a metrics file that the new user
# cannot write is refused after the fork, when nbdkit has changed
# user, not at the first client, after the format; a spare file link
# that nobody placed is refused before the fork.
if [ "$(id -u)" -eq 0 ] && getent group nogroup >/dev/null; then
  chmod 711 "$tmp"
  mkdir "$tmp/nobody" "$tmp/rootonly"
  chmod 700 "$tmp/rootonly"
  truncate -s 64M "$tmp/nobody/blank.img"
  cp "$data" "$tmp/nobody/data.img"
  chown -R nobody "$tmp/nobody"
  refused_run after "$tmp/log7u" "holds data" "$tmp/nobody/data.img" \
    -u nobody -g nogroup --filter="$REMAP_FILTER" \
    file "$tmp/nobody/data.img"
  refused_run after "$tmp/log7a" "remap-metrics-file" "$tmp/nobody/blank.img" \
    -u nobody -g nogroup --filter="$REMAP_FILTER" \
    file "$tmp/nobody/blank.img" remap-metrics-file="$tmp/rootonly/m.prom"
  # A spare file reached through a link that another account placed:
  # refused before the fork, never opened (as root) to be read.
  start_server sock "$tmp/log-good" --filter="$REMAP_FILTER" file "$blank" \
    remap-spare="$tmp/good.spare"
  stop_server "$sock"
  ln -s "$tmp/good.spare" "$tmp/nobody/link.spare"
  chown -h nobody "$tmp/nobody/link.spare"
  refused_run before "$tmp/log7l" "symbolic link that another account" \
    "$tmp/good.spare" --filter="$REMAP_FILTER" file "$blank" \
    remap-spare="$tmp/nobody/link.spare"
else
  echo "$test_name: the -u part skipped: needs root and nogroup"
fi

# 3. At the first client, when nbdkit says whether it is read-only: a
#    blank disk, remap-add, remap-format=yes under -r.
refused_run after "$tmp/log8" "read-only" "$blank" \
  -r --filter="$REMAP_FILTER" file "$blank"
refused_run after "$tmp/log9" "writable" "$formatted" \
  -r --filter="$REMAP_FILTER" file "$formatted" remap-add=5
refused_run after "$tmp/log10" "read-only" "$formatted" \
  -r --filter="$REMAP_FILTER" file "$formatted" remap-format=yes


# 4. Without --run, a refusal at the first client ends the server with
#    a failure.
r=0; try_start "$tmp/log11" -r --filter="$REMAP_FILTER" file "$blank" || r=$?
cat "$tmp/log11"
[ $r -ne $TRY_STARTED ] || fail "a read-only server served a blank disk"
[ $r -ne 0 ] || fail "nbdkit exited with status 0 after refusing"
[ $r -ne 124 ] || fail "nbdkit did not exit after refusing"
echo "$test_name: PASS"
