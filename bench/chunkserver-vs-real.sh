#!/usr/bin/env bash
# chunkserver-vs-real.sh -- the same real MooseFS 3.0.117 master and mfsmount, first
# with three real mfschunkservers, then with three Antler ones (order alternates per
# repetition), all on loopback; prints Antler/real ratios.
#
# Figures: 1 GiB sequential write (fio, bs 1M, end_fsync) and read (after dropping
# caches) at goal 1 and goal 2; 4 KiB random read and write (libaio, direct=1,
# iodepth 16, time based) at goal 1 and 2.
#
# Usage (root): bench/chunkserver-vs-real.sh
# Knobs: BENCH_BASE [/tmp/antler-bench]  REPS [1]  SEQ_SIZE [1G]  RAND_SIZE [256M]
#        RAND_TIME [20]  TESTS ["seq rand"]  GOALS ["1 2"]
# Output: $BENCH_BASE/results/{raw.tsv,summary.md}
# Only processes this script started are stopped (by PID); only loopback is used.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=../deploy/lab/mfs-cluster.sh
. "$REPO/deploy/lab/mfs-cluster.sh"
# shellcheck source=bench-lib.sh
. "$REPO/bench/bench-lib.sh"
B=${BENCH_BASE:-/tmp/antler-bench}
REPS=${REPS:-1}
SEQ_SIZE=${SEQ_SIZE:-1G}
RAND_SIZE=${RAND_SIZE:-256M}
RAND_TIME=${RAND_TIME:-20}
PORT0=${PORT0:-19419}
TESTS=${TESTS:-"seq rand"}
GOALS=${GOALS:-"1 2"}
bench_prepare

cargo build --release -p antler-chunkserver >&2
ANTLER_CS=$REPO/target/release/mfschunkserver
PIDS=()

trap 'stop_all' EXIT

drop_caches() {
  sync -f "$B/run/mnt" 2>/dev/null || true
  for i in 1 2 3; do sync -f "$B/run/cs$i" 2>/dev/null || true; done
  ( echo 3 > /proc/sys/vm/drop_caches ) & local p=$!
  for _ in $(seq 1 300); do kill -0 $p 2>/dev/null || { wait $p; return 0; }; sleep 0.1; done
}



up() {  # kind
  local kind=$1 r=$B/run i
  rm -rf "$r"; mkdir -p "$r/mnt" "$r/logs"
  write_master_cfg "$r" "$PORT0"
  bg "$r/logs/master.log" mfsmaster -c "$r/etc/mfsmaster.cfg" -f start
  for _ in $(seq 1 100); do ss -Hltn "sport = :$((PORT0+2))" | grep -q . && break; sleep 0.1; done
  for i in 1 2 3; do
    write_cs_cfg "$r" "$PORT0" "$i"
    if [ "$kind" = antler ]; then bg "$r/logs/cs$i.log" "$ANTLER_CS" -c "$r/etc/mfschunkserver$i.cfg" -f start
    else bg "$r/logs/cs$i.log" mfschunkserver -c "$r/etc/mfschunkserver$i.cfg" -f start; fi
  done
  for _ in $(seq 1 600); do [ "$(cs_registered "$PORT0")" -ge 3 ] && break; sleep 0.1; done
  [ "$(cs_registered "$PORT0")" -ge 3 ] || { echo "chunkservers did not register; see $r/logs" >&2; exit 1; }
  bg "$r/logs/mount.log" mfsmount "$r/mnt" -f -H 127.0.0.1 -P $((PORT0+2))
  for _ in $(seq 1 100); do mountpoint -q "$r/mnt" && break; sleep 0.1; done
  mfssettrashtime 0 "$r/mnt" >/dev/null
  for g in 1 2; do mkdir -p "$r/mnt/g$g"; mfssetgoal $g "$r/mnt/g$g" >/dev/null; done
}

fio_json() {  # out.json kind(read|write) -> "MiB/s IOPS"
  python3 - "$1" "$2" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1])); s = j["jobs"][0][sys.argv[2]]
print("%.1f\t%.0f" % (s["bw_bytes"] / 1048576.0, s["iops"]))
EOF
}

run_kind() {  # kind rep
  local kind=$1 rep=$2 m=$B/run/mnt g out
  say "== $kind (rep $rep): starting cluster"
  up "$kind"
  for g in $GOALS; do
    if [[ " $TESTS " == *" seq "* ]]; then
    out=$RES/$kind-$rep-seqw-g$g.json
    fio --name=seqw --filename="$m/g$g/seq" --rw=write --bs=1M --size="$SEQ_SIZE" --ioengine=psync \
        --end_fsync=1 --fallocate=none --output-format=json --output="$out" >/dev/null
    printf '%s\t%s\tseq_write_g%s\t%s\n' "$kind" "$rep" "$g" "$(fio_json "$out" write)" >> "$RES/raw.tsv"
    drop_caches
    out=$RES/$kind-$rep-seqr-g$g.json
    fio --name=seqr --filename="$m/g$g/seq" --rw=read --bs=1M --size="$SEQ_SIZE" --ioengine=psync \
        --output-format=json --output="$out" >/dev/null
    printf '%s\t%s\tseq_read_g%s\t%s\n' "$kind" "$rep" "$g" "$(fio_json "$out" read)" >> "$RES/raw.tsv"
    rm -f "$m/g$g/seq"
    fi
    [[ " $TESTS " == *" rand "* ]] || continue
    for rw in randwrite randread; do
      out=$RES/$kind-$rep-$rw-g$g.json
      fio --name=$rw --filename="$m/g$g/rand" --rw=$rw --bs=4k --size="$RAND_SIZE" --ioengine=libaio \
          --direct=1 --iodepth=16 --time_based --runtime="$RAND_TIME" --output-format=json --output="$out" >/dev/null
      local k=write; [ $rw = randread ] && k=read
      printf '%s\t%s\t%s_g%s\t%s\n' "$kind" "$rep" "$rw" "$g" "$(fio_json "$out" $k)" >> "$RES/raw.tsv"
    done
    rm -f "$m/g$g/rand"
  done
  stop_all
  say "== $kind (rep $rep): done"
}

for rep in $(seq 1 "$REPS"); do
  if [ $((rep % 2)) = 1 ]; then run_kind real "$rep"; run_kind antler "$rep"; else run_kind antler "$rep"; run_kind real "$rep"; fi
done

python3 - "$RES/raw.tsv" > "$RES/summary.md" <<'EOF'
import sys, statistics
from collections import defaultdict
d = defaultdict(lambda: defaultdict(list))
for line in open(sys.argv[1]):
    kind, rep, test, mibs, iops = line.rstrip("\n").split("\t")
    d[test][kind].append((float(mibs), float(iops)))
print("| test | real MiB/s | Antler MiB/s | real IOPS | Antler IOPS | Antler/real |")
print("|---|---|---|---|---|---|")
for test in d:
    r = statistics.median(x[0] for x in d[test]["real"]); a = statistics.median(x[0] for x in d[test]["antler"])
    ri = statistics.median(x[1] for x in d[test]["real"]); ai = statistics.median(x[1] for x in d[test]["antler"])
    print(f"| {test} | {r:.1f} | {a:.1f} | {ri:.0f} | {ai:.0f} | {a / r if r else float('nan'):.2f} |")
EOF
cat "$RES/summary.md"
