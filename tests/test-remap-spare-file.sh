#!/usr/bin/env bash
# Proves that a spare file (remap-spare=FILE) must be private to the
# server's user, and that nothing another account places at its path
# is used: a link that another account could have placed is refused
# (even with remap-format=yes its target is untouched), while a link
# only root or we could have made is followed; an existing spare file
# readable or writable by group or other, owned by another account,
# with a second name (hard link), or a FIFO, is refused with a message
# naming the fix, by the server (read-write and read-only) and by
# remapctl; once fixed, it is used.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo
: "${REMAPCTL:=$top_srcdir/tools/remapctl}"

disk=$tmp/disk.img
spare=$tmp/spare.img
victim=$tmp/victim
truncate -s 64M "$disk"
dd if=/dev/urandom of="$victim" bs=64K count=16 status=none
chmod 600 "$victim"
victim_md5=$(file_md5 "$victim")

# refused LOG MESSAGE PATH [-r] [filter parameters...]: the server
# refuses the spare file at PATH, with MESSAGE in its log.
refused ()
{
  local log=$1 msg=$2 path=$3 ro= r=0
  shift 3
  [ "$1" != -r ] || { ro=-r; shift; }
  try_start "$log" $ro --filter="$REMAP_FILTER" file "$disk" \
    remap-spare="$path" "$@" || r=$?
  cat "$log"
  [ $r -ne $TRY_STARTED ] || fail "the spare file $path was accepted ($msg)"
  [ $r -ne 0 ] || fail "exited with status 0 ($msg)"
  grep -q -- "$msg" "$log" || fail "no message '$msg'"
}

# 1. A new spare file is made 0600, and used again.
start_server sock "$tmp/log1" --filter="$REMAP_FILTER" file "$disk" \
  remap-spare="$spare"
stop_server "$sock"
[ "$(stat -c %a "$spare")" = 600 ] || fail "new spare file mode $(stat -c %a "$spare")"
spare_md5=$(file_md5 "$spare")

# 2. Readable by others: refused (read-write, read-only, remapctl),
#    unchanged; after the chmod the message names, used.
chmod 644 "$spare"
refused "$tmp/log2" "may be read or written by group or other (mode 0644).*chmod 600 $spare" "$spare"
refused "$tmp/log3" "chmod 600 $spare" "$spare" -r
r=0; "$REMAPCTL" --spare="$spare" show >"$tmp/ctl.out" 2>&1 || r=$?
cat "$tmp/ctl.out"
[ $r -ne 0 ] || fail "remapctl used a spare file readable by others"
grep -q "chmod 600 $spare" "$tmp/ctl.out" || fail "remapctl's message"
[ "$(file_md5 "$spare")" = "$spare_md5" ] || fail "a refused spare file changed"
chmod 600 "$spare"
start_server sock "$tmp/log4" --filter="$REMAP_FILTER" file "$disk" \
  remap-spare="$spare"
stop_server "$sock"

# 3. A second name (hard link): refused.
ln "$spare" "$tmp/spare.again"
refused "$tmp/log5" "has 2 names (hard links)" "$spare"
rm "$tmp/spare.again"

# 4. A FIFO: refused at once (the open does not wait for a writer).
mkfifo "$tmp/fifo"
refused "$tmp/log6" "is not a regular file or block device" "$tmp/fifo"

# 5. A link in a directory that any account may write (not sticky):
#    refused even with remap-format=yes; its target is untouched.  The
#    same link where only we could have made it is followed.
mkdir -m 777 "$tmp/open"
ln -s "$victim" "$tmp/open/spare.img"
refused "$tmp/log7" "is a symbolic link that another account could have placed" \
  "$tmp/open/spare.img" remap-format=yes
[ "$(file_md5 "$victim")" = "$victim_md5" ] || fail "the link's target changed"
ln -s "$spare" "$tmp/spare.link"
start_server sock "$tmp/log8" --filter="$REMAP_FILTER" file "$disk" \
  remap-spare="$tmp/spare.link"
stop_server "$sock"

# 6. What another account (nobody) places, in a directory it may
#    write: its own spare file, 0666, and its link to our file, also
#    when our own link leads there; a link of its own to a FIFO is not
#    even opened.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  as_nobody () { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
  chmod 755 "$tmp"
  mkdir -m 1777 "$tmp/shared"
  as_nobody sh -c "umask 0; : >'$tmp/shared/spare.img'"
  refused "$tmp/log9" "belongs to uid $(id -u nobody), not to this server's user (uid 0)" \
    "$tmp/shared/spare.img"
  [ ! -s "$tmp/shared/spare.img" ] || fail "sectors went into nobody's file"
  as_nobody ln -s "$victim" "$tmp/shared/link.img"
  refused "$tmp/log10" "is a symbolic link that another account could have placed" \
    "$tmp/shared/link.img" remap-format=yes
  [ "$(file_md5 "$victim")" = "$victim_md5" ] || fail "the link's target changed"
  # Our own link, in a directory only we can write, that points into
  # nobody's directory: nobody chooses the file (here, a link to ours).
  mkdir "$tmp/theirs"
  chown nobody "$tmp/theirs"
  as_nobody ln -s "$victim" "$tmp/theirs/spare.img"
  ln -s "$tmp/theirs/spare.img" "$tmp/ours.link"
  refused "$tmp/log11" "is a symbolic link that another account could have placed" \
    "$tmp/ours.link" remap-format=yes
  [ "$(file_md5 "$victim")" = "$victim_md5" ] || fail "the link's target changed"
  # A refused link is not even opened to look for a table: nobody's
  # link to a FIFO of its own, with a writer waiting on the FIFO, which
  # an open for reading would let through (as an open of a device, for
  # instance /dev/watchdog, would act on it).
  as_nobody mkfifo "$tmp/shared/fifo"
  as_nobody ln -s "$tmp/shared/fifo" "$tmp/shared/fifo.link"
  timeout "$(( $(scaled_ms 5000) / 1000 + 1 ))" \
    sh -c "echo x >'$tmp/shared/fifo'" &
  writer=$!
  track_pid $writer
  refused "$tmp/log12" "is a symbolic link that another account could have placed" \
    "$tmp/shared/fifo.link"
  r=0; wait $writer || r=$?
  [ $r -eq 124 ] || fail "the server opened what nobody's link points to (the writer got through)"
else
  echo "$test_name: not root (or no setpriv): another account's files not tried"
fi
