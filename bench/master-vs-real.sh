#!/usr/bin/env bash
# master-vs-real.sh -- the same real MooseFS 3.0.117 mfsmount and chunkserver, first
# with the real mfsmaster, then with Antler's (order alternates per repetition), all on
# loopback; prints Antler/real ratios.
#
# Figures (metadata only, one directory of $FILES files, attribute and entry caches of
# the mount off so every call reaches the master):
#   create  -- os.open(O_CREAT|O_EXCL) + close per file
#   stat    -- os.stat per file
#   ls -l   -- `ls -l` of the directory (readdir with attributes, then lstat per entry)
#   unlink  -- os.unlink per file
#   cpu     -- master CPU time (user + system) per create / stat, in microseconds
#   RSS     -- master resident memory (VmRSS) idle, and after creating $RSS_FILES files
#              (in directories of 10,000)
#
# Usage (root): bench/master-vs-real.sh
# Knobs: BENCH_BASE [/tmp/antler-bench-master]  REPS [1]  FILES [10000]
#        RSS_FILES [1000000]  PORT0 [19519]
#        ANTLER_CFG  extra mfsmaster.cfg lines for Antler's master only
#                    (e.g. "CHANGELOG_FSYNC = 0")
# Output: $BENCH_BASE/results/{raw.tsv,summary.md}
# Only processes this script started are stopped (by PID); only loopback is used.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=../deploy/lab/mfs-cluster.sh
. "$REPO/deploy/lab/mfs-cluster.sh"
# shellcheck source=bench-lib.sh
. "$REPO/bench/bench-lib.sh"
B=${BENCH_BASE:-/tmp/antler-bench-master}
REPS=${REPS:-1}
FILES=${FILES:-10000}
RSS_FILES=${RSS_FILES:-1000000}
PORT0=${PORT0:-19519}
bench_prepare

cargo build --release -p antler-master >&2
ANTLER_MASTER=$REPO/target/release/mfsmaster
PIDS=()
MASTER_PID=

trap 'stop_all' EXIT


rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system, in clock ticks) the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

up() {  # kind
  local kind=$1 r=$B/run
  rm -rf "$r"; mkdir -p "$r/mnt" "$r/logs"
  write_master_cfg "$r" "$PORT0"
  [ "$kind" = antler ] && [ -n "${ANTLER_CFG:-}" ] && printf '%s\n' "$ANTLER_CFG" >> "$r/etc/mfsmaster.cfg"
  if [ "$kind" = antler ]; then bg "$r/logs/master.log" "$ANTLER_MASTER" -c "$r/etc/mfsmaster.cfg" -f start
  else bg "$r/logs/master.log" mfsmaster -c "$r/etc/mfsmaster.cfg" -f start; fi
  MASTER_PID=${PIDS[-1]}
  for _ in $(seq 1 100); do ss -Hltn "sport = :$((PORT0+2))" | grep -q . && break; sleep 0.1; done
  write_cs_cfg "$r" "$PORT0" 1
  bg "$r/logs/cs1.log" mfschunkserver -c "$r/etc/mfschunkserver1.cfg" -f start
  for _ in $(seq 1 600); do [ "$(cs_registered "$PORT0")" -ge 1 ] && break; sleep 0.1; done
  bg "$r/logs/mount.log" mfsmount "$r/mnt" -f -H 127.0.0.1 -P $((PORT0+2)) \
     -o mfsattrcacheto=0,mfsentrycacheto=0,mfsdirentrycacheto=0,mfsnegentrycacheto=0
  for _ in $(seq 1 100); do mountpoint -q "$r/mnt" && break; sleep 0.1; done
  mountpoint -q "$r/mnt" || { echo "mount failed; see $r/logs" >&2; exit 1; }
}

ops() {  # op dir n -> ops/s
  python3 - "$@" <<'EOF'
import os, sys, time
op, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = [os.path.join(d, "f%06d" % i) for i in range(n)]
t = time.monotonic()
if op == "create":
    for p in names:
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
elif op == "stat":
    for p in names:
        os.stat(p)
elif op == "unlink":
    for p in names:
        os.unlink(p)
print("%.0f" % (n / (time.monotonic() - t)))
EOF
}

run_kind() {  # kind rep
  local kind=$1 rep=$2 m=$B/run/mnt v t0 t1
  say "== $kind (rep $rep)"
  up "$kind"
  sleep 2
  printf '%s\t%s\trss_idle_kib\t%s\n' "$kind" "$rep" "$(rss_kib "$MASTER_PID")" >> "$RES/raw.tsv"
  mkdir "$m/d"
  local c0 c1 hz; hz=$(getconf CLK_TCK)
  for op in create stat; do
    c0=$(cpu_ticks "$MASTER_PID")
    v=$(ops $op "$m/d" "$FILES"); printf '%s\t%s\t%s_ops\t%s\n' "$kind" "$rep" "$op" "$v" >> "$RES/raw.tsv"
    c1=$(cpu_ticks "$MASTER_PID")
    # Master CPU per operation, in microseconds (how much of the round trip is the master).
    printf '%s\t%s\t%s_master_cpu_us\t%s\n' "$kind" "$rep" "$op" "$(python3 -c "print('%.1f' % (($c1 - $c0) * 1e6 / $hz / $FILES))")" >> "$RES/raw.tsv"
  done
  t0=$(date +%s.%N); ls -l "$m/d" > /dev/null; t1=$(date +%s.%N)
  printf '%s\t%s\tls_l_entries_per_s\t%s\n' "$kind" "$rep" "$(python3 -c "print('%.0f' % ($FILES / ($t1 - $t0)))")" >> "$RES/raw.tsv"
  v=$(ops unlink "$m/d" "$FILES"); printf '%s\t%s\tunlink_ops\t%s\n' "$kind" "$rep" "$v" >> "$RES/raw.tsv"
  if [ "$RSS_FILES" -gt 0 ]; then
    say "$kind: creating $RSS_FILES files for the RSS figure"
    python3 - "$m/rss" "$RSS_FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    if i % 10000 == 0:
        d = os.path.join(root, "d%04d" % (i // 10000)); os.makedirs(d)
    os.close(os.open(os.path.join(d, "f%05d" % (i % 10000)), os.O_CREAT | os.O_WRONLY, 0o644))
EOF
    printf '%s\t%s\trss_%s_files_kib\t%s\n' "$kind" "$rep" "$RSS_FILES" "$(rss_kib "$MASTER_PID")" >> "$RES/raw.tsv"
  fi
  stop_all
}

for rep in $(seq 1 "$REPS"); do
  if [ $((rep % 2)) = 1 ]; then run_kind real "$rep"; run_kind antler "$rep"; else run_kind antler "$rep"; run_kind real "$rep"; fi
done

python3 - "$RES/raw.tsv" > "$RES/summary.md" <<'EOF'
import sys, statistics
from collections import defaultdict
d = defaultdict(lambda: defaultdict(list))
for line in open(sys.argv[1]):
    kind, rep, test, v = line.rstrip("\n").split("\t")
    d[test][kind].append(float(v))
print("| figure | real | Antler | Antler/real |")
print("|---|---|---|---|")
for test in d:
    r = statistics.median(d[test]["real"]); a = statistics.median(d[test]["antler"])
    print(f"| {test} | {r:.0f} | {a:.0f} | {a / r if r else float('nan'):.2f} |")
EOF
cat "$RES/summary.md"
