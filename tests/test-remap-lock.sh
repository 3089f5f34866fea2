#!/usr/bin/env bash
# The store is locked before anything is read: two servers started at
# the same moment on one blank image never both format it (exactly one
# serves, the other refuses saying the disk is in use); remapctl is
# refused while a server runs.  For a plugin without file=, the lock
# file in /run/nbdkit-remap is never a symbolic link followed, nor a
# file another account owns (that part runs as root, the attacker as
# nobody; skipped otherwise).  Read-only servers share a store.  A
# spare file that a server created but another server locked first is
# left to that one.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo
: "${REMAPCTL:=$_top_dir/tools/remapctl}"
[ -x "$REMAPCTL" ] || fail "$REMAPCTL not found (run make first)"

# 1. Two servers at once on one blank image, several times.
for round in 1 2 3 4 5; do
  disk=$tmp/race$round.img
  truncate -s 64M "$disk"
  for i in 1 2; do
    rm -f "$tmp/r$round-$i.sock"
    timeout $(( $(scaled_ms 60000) / 1000 )) \
      nbdkit -f -U "$tmp/r$round-$i.sock" --filter="$REMAP_FILTER" \
      file "$disk" >"$tmp/r$round-$i.log" 2>&1 &
    eval "pid$i=\$!"
    track_pid $!
  done
  # Each either serves or has exited.
  serving=0 refused=0
  deadline=$(( $(now_ms) + $(scaled_ms 10000) ))
  for i in 1 2; do
    eval "pid=\$pid$i"
    while :; do
      if ! kill -0 "$pid" 2>/dev/null; then
        r=0; wait "$pid" || r=$?
        [ $r -ne 0 ] || fail "round $round: server $i exited with status 0"
        grep -q "is in use by another nbdkit or by remapctl" \
          "$tmp/r$round-$i.log" || {
          cat "$tmp/r$round-$i.log"; fail "round $round: server $i: no in-use message"; }
        refused=$((refused + 1)); break
      fi
      if timeout 5 nbdinfo --size "$(uri "$tmp/r$round-$i.sock")" \
           >/dev/null 2>&1; then
        serving=$((serving + 1)); winner=$i; break
      fi
      [ "$(now_ms)" -lt $deadline ] ||
        fail "round $round: server $i neither served nor exited"
      sleep 0.05
    done
  done
  echo "round $round: $serving serving, $refused refused"
  [ $serving -eq 1 ] && [ $refused -eq 1 ] ||
    fail "round $round: $serving servers serve the same blank disk"
  eval "pid=\$pid$winner"
  qio "$tmp/r$round-$winner.sock" -c "write -P 0x33 0 4096"
  kill -TERM "$pid"; wait "$pid" || fail "round $round: status $? at exit"
done

# 2. remapctl is refused while a server runs, and works after it.
start_server sock "$tmp/log2" --filter="$REMAP_FILTER" file "$disk"
r=0
"$REMAPCTL" --disk="$disk" add 3 >"$tmp/out" 2>"$tmp/err" || r=$?
cat "$tmp/err"
[ $r -eq 3 ] || fail "remapctl add while a server runs: status $r"
grep -q "in use" "$tmp/err" || fail "remapctl gives no in-use message"
stop_server "$sock"
"$REMAPCTL" --disk="$disk" add 3 || fail "remapctl add after the server"

# 3. Read-only servers share a store; a server that can write is
#    refused while one of them runs, and they are refused while it runs.
start_server ro1 "$tmp/ro1.log" -r --filter="$REMAP_FILTER" file "$disk"
start_server ro2 "$tmp/ro2.log" -r --filter="$REMAP_FILTER" file "$disk"
r=0
try_start "$tmp/rw.log" --filter="$REMAP_FILTER" file "$disk" || r=$?
cat "$tmp/rw.log"
[ $r -ne $TRY_STARTED ] || fail "a writer started next to read-only servers"
grep -q "in use by a read-only nbdkit" "$tmp/rw.log" ||
  fail "no message about the read-only server"
r=0
"$REMAPCTL" --disk="$disk" add 4 2>"$tmp/err" || r=$?
[ $r -eq 3 ] || fail "remapctl add next to read-only servers: status $r"
stop_server "$ro2"
stop_server "$ro1"
start_server sock "$tmp/rw2.log" --filter="$REMAP_FILTER" file "$disk"
r=0
try_start "$tmp/ro3.log" -r --filter="$REMAP_FILTER" file "$disk" || r=$?
[ $r -ne $TRY_STARTED ] || fail "a read-only server started next to a writer"
grep -q "is in use by another nbdkit or by remapctl" "$tmp/ro3.log" ||
  fail "no in-use message for the read-only server"
stop_server "$sock"

# 3b. Two servers of two disks given the same new spare file, whose
#     first clients come together: the one that created the file but
#     was second to lock it refuses, and leaves the file to the one
#     that locked it (which it used to remove from under it, taking its
#     remaps with it).  strace delays every flock of the first server,
#     so that the other opens and locks the file in between.
if strace -f -qq -e trace=flock -e inject=flock:delay_enter=1 \
     -o /dev/null true 2>/dev/null; then
  shared=$tmp/shared.spare
  truncate -s 64M "$tmp/d1.img" "$tmp/d2.img"
  rm -f "$tmp/b.sock" "$tmp/a.sock"
  timeout $(( $(scaled_ms 60000) / 1000 )) \
    nbdkit -f -U "$tmp/b.sock" -P "$tmp/b.pid" --filter="$REMAP_FILTER" \
    file "$tmp/d2.img" remap-spare="$shared" >"$tmp/b.log" 2>&1 &
  track_pid $!
  delay_us=$(( $(scaled_ms 3000) * 1000 ))
  timeout $(( $(scaled_ms 60000) / 1000 )) \
    strace -f -qq -o /dev/null -e trace=flock \
      -e inject=flock:delay_enter=$delay_us \
    nbdkit -f -U "$tmp/a.sock" --filter="$REMAP_FILTER" \
    file "$tmp/d1.img" remap-spare="$shared" >"$tmp/a.log" 2>&1 &
  track_pid $!
  deadline=$(( $(now_ms) + $(scaled_ms 20000) ))
  until [ -S "$tmp/a.sock" ] && [ -S "$tmp/b.sock" ]; do
    [ "$(now_ms)" -lt $deadline ] || fail "the two servers did not bind"
    sleep 0.05
  done
  # A's first client: A creates the file, then waits in its flock.
  timeout 30 nbdinfo --size "$(uri "$tmp/a.sock")" >"$tmp/a.out" 2>&1 &
  track_pid $!
  until [ -e "$shared" ]; do
    [ "$(now_ms)" -lt $deadline ] || fail "server A did not create $shared"
    sleep 0.01
  done
  # B's first client: B opens the file A created and locks it first.
  timeout 30 nbdinfo --size "$(uri "$tmp/b.sock")" ||
    fail "server B did not serve with the spare file"
  # A's flock returns: A refuses, and the file stays.
  until grep -q "is in use" "$tmp/a.log"; do
    [ "$(now_ms)" -lt $deadline ] || {
      cat "$tmp/a.log"; fail "server A did not refuse"; }
    sleep 0.05
  done
  cat "$tmp/a.log"
  [ -e "$shared" ] || fail "server A removed the spare file server B uses"
  b_pid=$(cat "$tmp/b.pid")
  kill -TERM "$b_pid"
  while kill -0 "$b_pid" 2>/dev/null; do
    [ "$(now_ms)" -lt $deadline ] || fail "server B did not stop"
    sleep 0.05
  done
  "$REMAPCTL" --spare="$shared" check || fail "the spare file B used is bad"
else
  echo "$test_name: no strace with fault injection: part 3b skipped"
fi

# 4. The lock file of a plugin without file= (root only).
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
  echo "$test_name: PASS (lock-file part skipped: needs root and setpriv)"
  exit 0
fi
nbdkit memory --dump-plugin >/dev/null 2>&1 || skip "no memory plugin"
# A size no other test uses, so that the lock name is ours.
size=$(( (64 * 1024 + (RANDOM % 4096) * 4) * 1024 ))
start_server sock "$tmp/log3" -v --filter="$REMAP_FILTER" memory "$size"
stop_server "$sock"
lock=$(sed -n 's/.*remap: store lock file \([^ ]*\)$/\1/p' "$tmp/log3")
echo "lock file: $lock"
case $lock in
  /run/nbdkit-remap/*.lock) ;;
  *) fail "no lock file under /run/nbdkit-remap: '$lock'" ;;
esac
# The lock file goes at exit, before the usual cleanup.
trap '_rc=$?; rm -f "$lock"; (exit $_rc); _cleanup' EXIT
[ "$(stat -c %U:%a /run/nbdkit-remap)" = "root:700" ] ||
  fail "the lock directory is $(stat -c %U:%a /run/nbdkit-remap)"

# nobody cannot plant anything there.
rm -f "$lock"
if setpriv --reuid=nobody --regid=nogroup --clear-groups \
     ln -s "$tmp/victim" "$lock" 2>/dev/null; then
  fail "nobody could create a link in the lock directory"
fi

# A link planted there anyway (by whoever could) is not followed.
ln -s "$tmp/victim" "$lock"
r=0
try_start "$tmp/log4" --filter="$REMAP_FILTER" memory "$size" || r=$?
cat "$tmp/log4"
[ $r -ne $TRY_STARTED ] || fail "the server started through a symbolic link"
grep -q "symbolic link" "$tmp/log4" || fail "no message about the link"
[ ! -e "$tmp/victim" ] || fail "the link's target was created"
rm -f "$lock"

# A lock file owned by another account (which could hold it forever)
# is refused, naming it.
touch "$lock"
chown nobody "$lock"
r=0
try_start "$tmp/log5" --filter="$REMAP_FILTER" memory "$size" || r=$?
cat "$tmp/log5"
[ $r -ne $TRY_STARTED ] || fail "the server used a lock file nobody owns"
grep -q "not a regular file owned by this user" "$tmp/log5" ||
  fail "no message about the owner"
rm -f "$lock"

echo "$test_name: PASS"
