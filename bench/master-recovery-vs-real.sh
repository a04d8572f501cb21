#!/usr/bin/env bash
# master-recovery-vs-real.sh -- metadata load, `-a` recovery and metadata dump of the
# real MooseFS 3.0.117 mfsmaster against Antler's, on the same generated metadata file
# ($FILES one-chunk files in directories of 10,000, bench/gen-metadata.py), loopback.
#
# Per master, in one run:
#   load     -- plain start on metadata.mfs until the client port listens
#   recover  -- after $CHANGES creates through a real mfsmount and `kill -9`:
#               `mfsmaster -a` until the client port listens (load + changelog replay)
#   dump     -- SIGTERM until the process exits (writes metadata.mfs of all files)
#   rss      -- master VmRSS after the load
# Ratios are Antler/real (lower is better for times and memory).
#
# Usage (root): bench/master-recovery-vs-real.sh
# Knobs: BENCH_BASE [/tmp/antler-bench-recovery]  FILES [1000000]  CHANGES [10000]
#        PORT0 [19619]
# Output: $BENCH_BASE/results/{raw.tsv,summary.md}
# Only processes this script started are stopped (by PID); only loopback is used.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=../deploy/lab/mfs-cluster.sh
. "$REPO/deploy/lab/mfs-cluster.sh"
# shellcheck source=bench-lib.sh
. "$REPO/bench/bench-lib.sh"
B=${BENCH_BASE:-/tmp/antler-bench-recovery}
FILES=${FILES:-1000000}
CHANGES=${CHANGES:-10000}
PORT0=${PORT0:-19619}
bench_prepare

cargo build --release -p antler-master >&2
ANTLER_MASTER=$REPO/target/release/mfsmaster
PIDS=()
trap 'stop_all' EXIT

say "generating metadata with $FILES files"
python3 "$REPO/bench/gen-metadata.py" "$B/seed.mfs" "$FILES"

now() { date +%s.%N; }
wait_port() { for _ in $(seq 1 6000); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.01; done; return 1; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RES/raw.tsv"; }

master() {  # kind args... (starts in background, sets MPID)
  local kind=$1; shift
  local bin=mfsmaster; [ "$kind" = antler ] && bin=$ANTLER_MASTER
  bg "$B/run/logs/master.log" "$bin" "$@" -c "$B/run/etc/mfsmaster.cfg" -f start
  MPID=${PIDS[-1]}
}

run_kind() {
  local kind=$1 r=$B/run t0 t1
  say "== $kind"
  rm -rf "$r"; mkdir -p "$r/mnt" "$r/logs"
  write_master_cfg "$r" "$PORT0"
  cp "$B/seed.mfs" "$r/master/metadata.mfs"
  t0=$(now); master "$kind"; wait_port $((PORT0+2)); t1=$(now)
  record "$kind" load_s "$(echo "$t1 - $t0" | bc)"
  sleep 1
  record "$kind" rss_mib "$(awk '/^VmRSS:/ {printf "%.0f", $2/1024}' "/proc/$MPID/status")"
  bg "$r/logs/mount.log" mfsmount "$r/mnt" -f -H 127.0.0.1 -P $((PORT0+2))
  for _ in $(seq 1 100); do mountpoint -q "$r/mnt" && break; sleep 0.1; done
  python3 - "$r/mnt/changes" "$CHANGES" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2]); os.makedirs(d)
for i in range(n):
    os.close(os.open(os.path.join(d, "c%06d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
PY
  kill -KILL "$MPID"; wait "$MPID" 2>/dev/null || true
  t0=$(now); master "$kind" -a; wait_port $((PORT0+2)); t1=$(now)
  record "$kind" recover_s "$(echo "$t1 - $t0" | bc)"
  [ "$(find "$r/mnt/changes" -type f | wc -l)" = "$CHANGES" ] || { echo "$kind: changes lost in recovery" >&2; exit 1; }
  t0=$(now); kill -TERM "$MPID"; while kill -0 "$MPID" 2>/dev/null; do sleep 0.01; done; t1=$(now)
  record "$kind" dump_s "$(echo "$t1 - $t0" | bc)"
  record "$kind" metadata_mib "$(du -m "$r/master/metadata.mfs" | cut -f1)"
  stop_all
}

run_kind real
run_kind antler

python3 - "$RES/raw.tsv" > "$RES/summary.md" <<'PY'
import sys
from collections import defaultdict
d = defaultdict(dict)
for line in open(sys.argv[1]):
    kind, test, v = line.rstrip("\n").split("\t")
    d[test][kind] = float(v)
print("| figure | real | Antler | Antler/real |")
print("|---|---|---|---|")
for test, v in d.items():
    r, a = v.get("real", float("nan")), v.get("antler", float("nan"))
    print(f"| {test} | {r:.2f} | {a:.2f} | {a / r if r else float('nan'):.2f} |")
PY
cat "$RES/summary.md"
