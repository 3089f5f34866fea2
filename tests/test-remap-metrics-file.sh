#!/usr/bin/env bash
# Proves that the metrics file cannot be used to write anywhere else,
# whatever another account that can write its directory plants there:
# a symbolic link at FILE.tmp (the fixed temporary name of old) leaves
# its target untouched; a link, FIFO or directory at FILE is refused at
# start-up with a message and left in place; a FIFO at FILE.tmp hangs
# nothing; the file is 0644 whatever the umask, and no temporary file
# is left behind; and a link that replaces the whole directory while
# the server runs does not redirect the writes.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo python3

disk=$tmp/disk.img
dir=$tmp/textfile
prom=$dir/remap.prom
ctl=$tmp/ctl.sock
victim=$tmp/victim
truncate -s 64M "$disk"
mkdir "$dir"
echo "precious root data" >"$victim"
chmod 600 "$victim"
victim_md5=$(file_md5 "$victim")

# waits_for CMD...: polls until CMD succeeds (bounded, scaled).
waits_for ()
{
  local deadline=$(( $(now_ms) + $(scaled_ms 20000) ))
  until "$@"; do
    [ "$(now_ms)" -lt $deadline ] || return 1
    sleep 0.1
  done
}

syncs_in_prom ()                # syncs_in_prom N: the file says >= N syncs
{
  [ -f "$prom" ] &&
    awk -v n="$1" '$1 == "nbdkit_remap_metadata_syncs_total" && $2 >= n \
      { found = 1 } END { exit !found }' "$prom"
}

# 1. A link planted at FILE.tmp while the server runs: the next writes
#    (one after each sync) do not touch its target, FILE stays a
#    regular file.  The server runs with umask 077: the file is still
#    0644, for a collector running as another account.
old_umask=$(umask)
umask 077
start_server sock "$tmp/log1" --filter="$REMAP_FILTER" file "$disk" \
  remap-control="$ctl" remap-metrics-file="$prom"
umask "$old_umask"
waits_for syncs_in_prom 0 || fail "no metrics file after start-up"
ln -s "$victim" "$prom.tmp"
ctlcmd sync >/dev/null
waits_for syncs_in_prom 1 || fail "the metrics file was not rewritten"
ctlcmd sync >/dev/null
waits_for syncs_in_prom 2 || fail "the metrics file was not rewritten"
[ "$(file_md5 "$victim")" = "$victim_md5" ] ||
  fail "the target of the link at FILE.tmp was overwritten: $(head -c 200 "$victim")"
[ -f "$prom" ] && [ ! -L "$prom" ] || fail "FILE is not a regular file"
[ -L "$prom.tmp" ] || fail "the planted link was removed"
[ "$(stat -c %a "$prom")" = 644 ] ||
  fail "metrics file mode $(stat -c %a "$prom") under umask 077, not 644"
[ "$(stat -c %a "$victim")" = 600 ] || fail "the victim's mode changed"
stop_server "$sock"
# Nothing but the file and the planted link is left.
left=$(cd "$dir" && ls -A | sort | tr '\n' ' ')
[ "$left" = "remap.prom remap.prom.tmp " ] || fail "left in the directory: $left"
rm -f "$prom" "$prom.tmp"

# refused LOG WHAT: a server with something other than a regular file
# at FILE refuses to start, says why, and leaves the thing in place.
refused ()
{
  local r=0
  try_start "$1" --filter="$REMAP_FILTER" file "$disk" \
    remap-metrics-file="$prom" || r=$?
  cat "$1"
  [ $r -ne $TRY_STARTED ] || fail "started with $2 at the metrics path"
  [ $r -ne 0 ] || fail "exited with status 0 with $2 at the metrics path"
  grep -q "remap-metrics-file: $prom exists and is not a regular file" "$1" ||
    fail "no message for $2"
}

# 2. A link at FILE: refused, the link and its target untouched.
ln -s "$victim" "$prom"
refused "$tmp/log2" "a symbolic link"
[ -L "$prom" ] || fail "the link at FILE was removed"
[ "$(file_md5 "$victim")" = "$victim_md5" ] || fail "the victim changed"
rm "$prom"

# 3. A FIFO at FILE, and a directory: refused, never opened (try_start
#    bounds the wait: a hang fails the test).
mkfifo "$prom"
refused "$tmp/log3" "a FIFO"
[ -p "$prom" ] || fail "the FIFO at FILE was removed"
rm "$prom"
mkdir "$prom"
refused "$tmp/log4" "a directory"
[ -d "$prom" ] || fail "the directory at FILE was removed"
rmdir "$prom"

# 4. A FIFO at FILE.tmp: the server starts (the name is not used) and
#    writes the file.
mkfifo "$prom.tmp"
start_server sock "$tmp/log5" --filter="$REMAP_FILTER" file "$disk" \
  remap-metrics-file="$prom"
waits_for syncs_in_prom 0 || fail "no metrics file with a FIFO at FILE.tmp"
stop_server "$sock"
[ -p "$prom.tmp" ] || fail "the FIFO at FILE.tmp was removed"

# 5. An account that may rename the metrics file's directory (it owns
#    the directory above, as a node exporter's account often does)
#    swaps it for a link to a directory only root can write, while the
#    server runs: the next writes still go to the directory the server
#    started with, never into root's.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  as_nobody () { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
  chmod 755 "$tmp"
  mkdir -p "$tmp/exporter/textfile"
  chown -R nobody "$tmp/exporter"
  mkdir -m 700 "$tmp/rootonly"
  start_server sock "$tmp/log6" --filter="$REMAP_FILTER" file "$disk" \
    remap-control="$ctl" remap-metrics-file="$tmp/exporter/textfile/remap.prom"
  prom=$tmp/exporter/textfile/remap.prom
  waits_for syncs_in_prom 0 || fail "no metrics file after start-up"
  as_nobody mv "$tmp/exporter/textfile" "$tmp/exporter/moved"
  as_nobody ln -s "$tmp/rootonly" "$tmp/exporter/textfile"
  ctlcmd sync >/dev/null
  prom=$tmp/exporter/moved/remap.prom
  written () { [ -e "$tmp/rootonly/remap.prom" ] || syncs_in_prom 1; }
  waits_for written || fail "the metrics file was not rewritten"
  [ ! -e "$tmp/rootonly/remap.prom" ] ||
    fail "the metrics file was written through a link that replaced its directory"
  stop_server "$sock"
else
  echo "$test_name: not root (or no setpriv): a swapped directory not tried"
fi
