#!/usr/bin/env bash
# nbdkit-remap: orderly shutdown under load, many times over.
#
#   test-shutdown-cycles.sh [CYCLES]   (default $SHUTDOWN_CYCLES or 100)
#
# Each cycle starts the server (remap over the bad-sector filter, with
# a control socket), runs crash-client.py's writers on several
# connections while new failing sectors keep appearing, takes a
# "durable remaps" snapshot through the control socket (list, then
# sync), and stops the server in rotation with SIGTERM, SIGINT, or the
# end of `nbdkit --run 'sleep 0.3'`.  Checks:
#   - the server exits within 1 s of the signal (or of the end of the
#     --run command), with status 0;
#   - it restarts (the table on disk is valid) and every remap of the
#     snapshot is still there;
#   - every acknowledged write reads back (the client journal, as in
#     run-crash.sh: after an orderly stop even unflushed ones must).
#
# Then the slow plugin (SHUTDOWN_SLOW=0 skips it): "delay-write 2000"
# makes every write and flush of the plugin take 2 s.
#   slow-1: no failing sectors; SIGTERM with writes in flight.  The
#           exit may wait for the plugin calls in flight (2 s) only.
#   slow-2, slow-3: every sector written fails too, so that remaps
#           (slow-2) or their metadata writes (slow-3: each a series of
#           plugin writes and flushes) are in flight at SIGTERM.  The
#           time to exit and where it went (a timeline from the
#           timestamped log) are printed.
# Each is held to "the plugin call in flight, plus 1 s": at most
# SHUTDOWN_SLOW_LIMIT_MS (default 3000) ms, and the exit must not wait
# for a plugin call that started after the SIGTERM.
source "$(dirname "$0")/crash-lib.sh"
NBDIO="$PYTHON $crash_dir/nbdio.py"

cycles=${1:-${SHUTDOWN_CYCLES:-100}}
seed=${SHUTDOWN_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
limit_ms=${SHUTDOWN_LIMIT_MS:-1000}
slow_limit_ms=${SHUTDOWN_SLOW_LIMIT_MS:-3000}
hot=4096
img=$work/disk.img
list=$work/bad.txt
journal=$work/journal
ctlsock=$work/ctl.sock
failures=0
max_exit=0
sum_exit=0
n_exit=0
t_durable=0
t_remaps=0

failure ()
{
  failures=$((failures + 1))
  echo "$test_name: cycle ${cycle:-slow}: FAIL: $*"
}

echo "$test_name: $cycles cycles, seed $seed (SHUTDOWN_SEED reproduces)"

new_image ()
{
  rm -f "$img" "$journal"
  truncate -s 64M "$img"
  : >"$list"
}

add_bad ()
{
  local i
  for ((i = 0; i < $1; i++)); do
    rnd "$hot"
    echo "write $R" >>"$list"
  done
}

new_image
cycle=0
while [ $cycle -lt "$cycles" ]; do
  cycle=$((cycle + 1))
  mode=$(( (cycle - 1) % 3 ))
  case $mode in 0) how=SIGTERM ;; 1) how=SIGINT ;; 2) how=run ;; esac
  add_bad 8
  rm -f "$work/run.stamp"
  run=()
  [ $how = run ] &&
    run=(--run "sleep 0.3; date +%s%N >'$work/run.stamp'")
  if ! srv_start load "$work/load.log" \
       --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" file "$img" \
       badsector-file="$list" remap-spare-size=10% \
       remap-control="$ctlsock" "${run[@]}"; then
    failure "the server did not start ($SRV_RC): $(tail -3 "$work/load.log")"
    new_image
    continue
  fi
  run_bg cpid "$work/client.out" $PYTHON "$CLIENT" write \
    --socket "$SRV_SOCK" --journal "$journal" --threads 4 \
    --sectors "$hot" --duration 2 --seed "$RANDOM" --allow-no-server
  # More failing sectors while the writers run, then the snapshot of
  # durable remaps, then the stop.
  sleep 0.1
  add_bad 4
  $NBDIO durable "$ctlsock" >"$work/durable.txt" 2>&1
  drc=$?
  add_bad 4
  if [ $how = run ]; then
    # The server goes when the --run command ends.
    while srv_alive load && [ ! -s "$work/run.stamp" ]; do sleep 0.005; done
    stamp_ms=$(( $(cat "$work/run.stamp" 2>/dev/null || echo 0) / 1000000 ))
    _srv_kill_ms=$stamp_ms
    srv_reap load 10000
  else
    rnd 150; sleep "0.$(printf '%03d' $((50 + R)))"
    if ! srv_alive load; then
      failure "the server died before the $how: $(grep -v debug: \
               "$work/load.log" | tail -3)"
    fi
    srv_kill load "${how#SIG}"
    srv_reap load 10000
  fi
  reap_bg "$cpid"
  crc=$?
  exit_ms=$SRV_EXIT_MS
  n_exit=$((n_exit + 1))
  sum_exit=$((sum_exit + exit_ms))
  [ "$exit_ms" -gt "$max_exit" ] && max_exit=$exit_ms
  [ "$exit_ms" -le "$limit_ms" ] ||
    failure "$how: nbdkit took $exit_ms ms to exit (limit $limit_ms)"
  [ "$SRV_RC" -eq 0 ] || failure "$how: exit status $SRV_RC"
  [ $crc -eq 0 ] || [ $crc -eq 3 ] ||
    failure "the workload client failed ($crc): $(cat "$work/client.out")"
  if [ $crc -eq 3 ]; then
    # An error other than the connection going away: only acceptable
    # as ESHUTDOWN from a remap cut short by the stop.
    grep -q "ERROR" "$work/client.out" &&
      echo "$test_name: cycle $cycle: note: $(grep ERROR "$work/client.out" | head -2)"
  fi
  if [ $drc -ne 0 ]; then
    # With --run the 0.3 s may be over before the snapshot: then the
    # stop may cut its sync short, and there is nothing to hold.
    [ $how = run ] ||
      failure "the control snapshot (list + sync) failed:" \
              "$(cat "$work/durable.txt")"
    : >"$work/durable.txt"
  fi

  # Restart: the table loads, the durable remaps are there, the data
  # is right.
  if ! srv_start check "$work/check.log" -v --filter="$REMAP_FILTER" \
       file "$img" remap-spare-size=10% remap-control="$ctlsock"; then
    failure "restart failed ($SRV_RC)"
    new_image
    continue
  fi
  vout=$(timeout 120 $PYTHON "$CLIENT" verify --socket "$SRV_SOCK" \
           --journal "$journal" --settle --strict-acked --atomic-blocks 2>&1)
  vrc=$?
  $NBDIO remapped "$ctlsock" >"$work/after.txt" 2>&1
  srv_kill check TERM
  srv_reap check
  if [ $vrc -ne 0 ]; then
    echo "$vout"
    failure "after the $how: verify failed ($vrc):" \
            "$(grep -v debug: "$work/check.log" | tail -2)"
    new_image
    continue
  fi
  missing=$(grep ':remapped$' "$work/durable.txt" |
              grep -vxF -f "$work/after.txt" | head -5)
  [ -z "$missing" ] ||
    failure "remaps made durable before the $how are gone:" $missing
  nd=$(grep -c ':remapped$' "$work/durable.txt")
  t_durable=$((t_durable + nd))
  na=$(grep -c ':remapped$' "$work/after.txt")
  [ -n "$SHUTDOWN_VERBOSE" ] &&
    echo "cycle $cycle: $how, exit $exit_ms ms, $nd durable remaps in the" \
         "snapshot, $na after restart; $(cat "$work/client.out"); $vout"
  t_remaps=$na
  read -r gen entries used total <<<"$(sed -n 's/.*loaded [^:]*: generation \([0-9]*\), \([0-9]*\) entries, \([0-9]*\) of \([0-9]*\) spares used.*/\1 \2 \3 \4/p' "$work/check.log")"
  [ -n "$used" ] && [ "$used" -gt $(( total / 2 )) ] && new_image
done
echo "$test_name: cycles: $cycle, failures: $failures; exit time after" \
     "signal or --run end: max $max_exit ms, mean" \
     "$(( n_exit ? sum_exit / n_exit : 0 )) ms; $t_durable durable remaps" \
     "checked after restart"

# ---- The slow plugin. ----
# slow_case NAME LISTCONTENT: returns the exit time in SLOW_MS and the
# timestamped log in $work/NAME.log.
slow_case ()
{
  local name=$1 content=$2 log=$work/$1.log sock=$work/$1.sock
  local w p t0 i=0 tkill texit
  rm -f "$img" "$sock" "$sock.pid"
  truncate -s 64M "$img"
  : >"$list"
  # Timestamped log (seconds.milliseconds) of every debug line.
  ( timeout 300 nbdkit -f -v -D remap.verbose=1 -U "$sock" -P "$sock.pid" \
      --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" file "$img" \
      badsector-file="$list" remap-spare-size=10% 2>&1 |
      perl -MTime::HiRes=time -ne '$|=1; printf "%.3f %s", time, $_' \
      >"$log"; exit 0 ) 2>/dev/null &
  w=$!
  _live_add "$w"
  while [ ! -s "$sock.pid" ] && [ $i -lt 2000 ]; do sleep 0.005; i=$((i+1)); done
  p=$(cat "$sock.pid")
  _live_add "$p"
  # Slow the plugin down only once the table is formatted and loaded.
  i=0
  until timeout 5 nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1
  do
    sleep 0.02; i=$((i + 1))
    [ $i -lt 500 ] || { failure "$name: the server does not serve"; break; }
  done
  printf '%s' "$content" >"$list"
  run_bg cpid "$work/$name.client" $PYTHON "$CLIENT" write --socket "$sock" \
    --journal "$work/$name.journal" --threads 4 --sectors "$hot" \
    --duration 30 --seed 7 --allow-no-server --p-flush 0.2
  # Let writes (and in slow-2 their remaps) get under way.
  sleep "${SLOW_WAIT:-5}"
  tkill=$(perl -MTime::HiRes=time -e 'printf "%.3f", time')
  t0=$(now_ms)
  kill -TERM "$p"
  while kill -0 "$p" 2>/dev/null && [ $(( $(now_ms) - t0 )) -lt 120000 ]; do
    sleep 0.01
  done
  SLOW_MS=$(( $(now_ms) - t0 ))
  kill -KILL "$p" 2>/dev/null
  wait "$w"; _live_del "$w"; _live_del "$p"
  reap_bg "$cpid"
  # Where the time went, relative to the SIGTERM: the plugin calls in
  # flight, the remaps, the metadata writes, the shutdown steps.
  echo "$test_name: $name: SIGTERM at t=0; nbdkit exited after $SLOW_MS ms;" \
       "timeline (s):"
  LATE_FILE=$work/$name.late perl -ne '
    BEGIN { $t0 = shift @ARGV }
    next unless /^(\d+\.\d+) (.*)/;
    my ($t, $m) = ($1 - $t0, $2);
    next if $t < -2.2;
    $m =~ s/^nbdkit: //;
    # A plugin call started after the SIGTERM (its start is logged by
    # the bad-sector filter before its 2 s delay).
    if ($t > 0 && $m =~ /^(\S+: )?debug: badsector: (pwrite|flush|zero)/) {
      push @late, sprintf("%.3f %s", $t, $1 ? "connection" : "background");
    }
    $cleanup = $t if $m =~ /debug: remap: cleanup/;
    next unless $m =~ /badsector: (pwrite|flush)|file: (pwrite|flush)|remapped to|wrote metadata|remap table failed|aborting sleep|remap: cleanup|remap: counters|skipping the last|sending error|unload filter/;
    next if $m =~ /unload filter/ && $m !~ /remap/;
    $m =~ s/ counters: .*/ counters logged (stop done)/;
    $m = substr($m, 0, 110);
    print "    ", sprintf("%+7.3f ", $t), $m, "\n" if $n++ < 40;
    END {
      open my $f, ">", $ENV{LATE_FILE} or die;
      printf $f "cleanup %.3f\n", (defined $cleanup ? $cleanup : -1);
      print $f "late $_\n" for @late;
    }
  ' "$tkill" "$log"
}

# slow_verdict NAME MS WHAT: the exit may wait for the plugin calls in
# flight at SIGTERM (at most 2 s each) and nothing else.  It fails if
# it took more than SHUTDOWN_SLOW_LIMIT_MS, or if it waited for a
# plugin call that started after the SIGTERM: whatever the phase of
# the 2 s calls when the signal lands, that is time spent on something
# other than the call in flight.
slow_verdict ()
{
  local name=$1 ms=$2 what=$3 cleanup t kind waited=""
  cleanup=$(sed -n 's/^cleanup //p' "$work/$name.late")
  while read -r _ t kind; do
    # Exit at least 1.9 s after the call started: it was waited for.
    if [ $(( ms - $(awk -v t="$t" 'BEGIN { printf "%d", t * 1000 }') )) \
         -ge 1900 ]
    then
      waited="$waited ${kind} call started at +${t} s;"
    fi
  done < <(grep '^late ' "$work/$name.late")
  echo "$test_name: $name ($what): exit $ms ms after SIGTERM; every" \
       "connection closed (remap: cleanup) at +${cleanup} s"
  if [ -n "$waited" ]; then
    failure "$name ($what): the exit ($ms ms) waited for plugin calls" \
            "started after the SIGTERM:$waited see the timeline above"
  elif [ "$ms" -gt "$slow_limit_ms" ]; then
    failure "$name ($what): exit took $ms ms (limit $slow_limit_ms: the 2 s" \
            "plugin call in flight plus 1 s)"
  fi
}

if [ "${SHUTDOWN_SLOW:-1}" != 0 ]; then
  cycle=slow
  slow_case slow-1 "delay-write 2000
"
  slow1=$SLOW_MS
  slow_verdict slow-1 "$slow1" "delay-write 2000, plain writes in flight"
  # Every sector the writers use fails: each write is tried (2 s),
  # retried (2 s), moved to a spare (2 s), then waits for the table
  # write (a flush and, per copy, two writes and a flush: 2 s each).
  # SIGTERM at 5 s lands during the spare writes, at 9 s during a
  # metadata write.
  SLOW_WAIT=5 slow_case slow-2 "delay-write 2000
write 0-$((hot - 1))
"
  slow2=$SLOW_MS
  slow_verdict slow-2 "$slow2" "delay-write 2000, spare writes in flight"
  SLOW_WAIT=9 slow_case slow-3 "delay-write 2000
write 0-$((hot - 1))
"
  slow3=$SLOW_MS
  slow_verdict slow-3 "$slow3" "delay-write 2000, a metadata write in flight"
  echo "$test_name: slow plugin (delay-write 2000): exit after SIGTERM" \
       "$slow1 ms with plain writes in flight, $slow2 ms with spare writes" \
       "in flight, $slow3 ms with a metadata write in flight"
fi

echo "$test_name: failures: $failures"
[ $failures -eq 0 ] || exit 1
exit 0
