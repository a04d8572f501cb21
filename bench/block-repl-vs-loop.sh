#!/usr/bin/env bash
# block-repl-vs-loop.sh -- ext4 on block-repl (protocol C, peer across a veth pair)
# against ext4 on a plain loop device over a file on the same disk, in one run.
#
# Topology (created here, removed on exit): netns $NS-a (198.51.100.1/24) and $NS-b
# (198.51.100.2/24) joined by a veth pair; each runs one block-repl daemon. The images
# (sparse files) and the plain-loop image live in the same directory ($DIR, default
# /var/tmp), so both sides use the same disk.
#
# Workloads (fio, fresh ext4 each side, the same options):
#   seqw  : 1 MiB sequential writes, $SEQ_MB MiB, one final fsync (dd conv=fsync;
#           the time includes the fsync)                                  -> MiB/s
#   randw : 4 KiB random writes, libaio, iodepth 16, O_DIRECT, $TIME s    -> IOPS
#   syncw : 4 KiB writes, fdatasync after each, $TIME s                   -> mean latency
#   resync: after `disconnect` on the secondary, $RESYNC_MB MiB written on the primary,
#           then `connect`: KiB resynced / time from connect to Connected -> MiB/s
# Ratios: block-repl / plain loop (higher is better for seqw and randw; for syncw the
# ratio is plain latency / block-repl latency, so higher is better there too).
# Also printed: the whole machine's busy CPU per unit of work on each side (/proc/stat
# around each job), since both nodes and the workload share the same vCPUs.
# Knobs: DEV_MB (device size, 2048), SEQ_MB (1024), TIME (15), RESYNC_MB (512), DIR,
# WARM_MB (memory touched and freed before each job, 3072),
# JOBS (subset of "seqw randw syncw"), PROFILE_DIR (record `perf record -a -g` of each
# block-repl job there, for finding where the time goes).
# Requires: fio, e2fsprogs, util-linux, iproute2, python3, cargo.
set -euo pipefail

DEV_MB=${DEV_MB:-2048}
SEQ_MB=${SEQ_MB:-1024}
TIME=${TIME:-15}
RESYNC_MB=${RESYNC_MB:-512}
JOBS=${JOBS:-seqw randw syncw}
PROFILE_DIR=${PROFILE_DIR:-}
DIR=${DIR:-/var/tmp}
NS=brbench$$
W=$(mktemp -d "$DIR/brbench.XXXXXX")
ROOT=$(cd "$(dirname "$0")/.." && pwd)

cargo build --release -q -p antler-block-repl --manifest-path "$ROOT/Cargo.toml"
BR="$ROOT/target/release/block-repl"

PLAIN_LOOP=""
cleanup() {
    set +e
    for m in "$W"/mnt-*; do umount -l "$m" 2>/dev/null; done
    [ -n "$PLAIN_LOOP" ] && losetup -d "$PLAIN_LOOP" 2>/dev/null
    for n in a b; do
        p=$(cat "$W/run-$n/r.pid" 2>/dev/null) && kill -9 "$p" 2>/dev/null
    done
    sleep 0.5
    for l in $(losetup -a | grep -E "\(/disk\)|$W" | cut -d: -f1); do losetup -d "$l"; done
    ip netns del $NS-a 2>/dev/null; ip netns del $NS-b 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

ip netns add $NS-a; ip netns add $NS-b
ip link add vbra netns $NS-a type veth peer name vbrb netns $NS-b
ip -n $NS-a addr add 198.51.100.1/24 dev vbra; ip -n $NS-a link set vbra up; ip -n $NS-a link set lo up
ip -n $NS-b addr add 198.51.100.2/24 dev vbrb; ip -n $NS-b link set vbrb up; ip -n $NS-b link set lo up

for f in a b; do fallocate -l $(( (DEV_MB + 16) << 20 )) "$W/$f.img"; done
fallocate -l $(( DEV_MB << 20 )) "$W/plain.img"
cat > "$W/r.toml" <<EOF
[resource]
name = "r"
protocol = "C"
shared_secret = "bench"
[[node]]
name = "a"
address = "198.51.100.1:7789"
disk = "$W/a.img"
device = "$W/dev-a"
run_dir = "$W/run-a"
[[node]]
name = "b"
address = "198.51.100.2:7789"
disk = "$W/b.img"
device = "$W/dev-b"
run_dir = "$W/run-b"
[disk]
resync_rate = "4GiB"
EOF
br() { local n=$1; shift; ip netns exec $NS-$n "$BR" -c "$W/r.toml" --node "$n" "$@"; }
status_json() { br "$1" status --json; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
wait_cs() {
    for _ in $(seq 600); do
        [ "$(status_json "$1" | field "['cstate']")" = "$2" ] && return 0
        sleep 0.1
    done
    echo "timeout waiting for $1 $2" >&2; exit 1
}

br a create-md >/dev/null; br b create-md >/dev/null
br a up >/dev/null; br b up >/dev/null
wait_cs a Connected
br a primary --force >/dev/null
wait_cs a Connected
PLAIN_LOOP=$(losetup --direct-io=on --sector-size 4096 -f --show "$W/plain.img")

fio_run() { # dir job -> json
    local d=$1 job=$2
    case $job in
    # dd, not fio: fio's runtime leaves out the end_fsync, which is the part that
    # reaches both disks here. dd's own elapsed time includes its final fsync.
    seqw) dd if=/dev/zero of="$d/fio.seq" bs=1M count="$SEQ_MB" conv=fsync 2>&1 ;;
    randw) fio --name=randw --directory="$d" --filename=fio.rand --rw=randwrite --bs=4k --size=512M --ioengine=libaio --iodepth=16 --direct=1 --runtime=$TIME --time_based --output-format=json ;;
    syncw) fio --name=syncw --directory="$d" --filename=fio.sync --rw=randwrite --bs=4k --size=256M --ioengine=psync --fdatasync=1 --runtime=$TIME --time_based --output-format=json ;;
    esac
}
metric() { # job < json
    case $1 in
    seqw) awk -v mb="$SEQ_MB" '/copied/ { printf "%.0f\n", mb / $(NF-3) }' ;;
    randw) python3 -c "import json,sys; print('%.0f' % json.load(sys.stdin)['jobs'][0]['write']['iops'])" ;;
    syncw) python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; s=j.get('sync',{}); l=s.get('lat_ns',{}).get('mean') or 0; w=j['write']['clat_ns']['mean']; print('%.0f' % ((l+w)/1000.0))" ;;
    esac
}

declare -A R C
# This VM hands freed memory back to its host (virtio-balloon free page reporting), and
# the first touch of such a page costs far more than a reused one; page-cache fills
# (dd into ext4) then vary 3x with whatever ran before. So every job starts with the
# same warm free memory: touch WARM_MB MiB and free it, right before the job.
WARM_MB=${WARM_MB:-3072}
warm_memory() { python3 -c "b = bytearray(b'\x01') * ($WARM_MB << 20)"; }
# Busy CPU time of the whole machine (both vCPUs), in clock ticks: user, nice, system,
# irq, softirq, steal.
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
HZ=$(getconf CLK_TCK)
for side in plain repl; do
    dev=$([ $side = plain ] && echo "$PLAIN_LOOP" || echo "$W/dev-a")
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev"
    mkdir -p "$W/mnt-$side"; mount "$dev" "$W/mnt-$side"
done
# Each job runs on both sides back to back, so both meet the same machine state (this
# shared VM's disk and page cache drift a lot over a run).
for job in seqw randw syncw; do
    for side in plain repl; do
        R[$side-$job]=0
        case " $JOBS " in *" $job "*) ;; *) continue ;; esac
        sync; echo 3 > /proc/sys/vm/drop_caches
        warm_memory
        if [ -n "$PROFILE_DIR" ] && [ $side = repl ]; then
            mkdir -p "$PROFILE_DIR"
            perf record -a -g -q -o "$PROFILE_DIR/$job.data" -- sleep $((TIME + 2)) 2>/dev/null &
            PERF_PID=$!
        fi
        b0=$(busy)
        R[$side-$job]=$(fio_run "$W/mnt-$side" $job | metric $job)
        C[$side-$job]=$(( $(busy) - b0 ))
        [ -n "${PERF_PID:-}" ] && { wait "$PERF_PID" || true; PERF_PID=""; }
        rm -f "$W/mnt-$side"/fio.*
    done
done

# Resync after a disconnect.
br b disconnect >/dev/null
wait_cs b StandAlone
dd if=/dev/urandom of="$W/mnt-repl/resync.bin" bs=1M count=$RESYNC_MB conv=fsync status=none
sync
before=$(status_json a | field "['sent_kib']")
oos=$(status_json a | field "['out_of_sync_kib']")
t0=$(date +%s.%N)
br b connect >/dev/null
sleep 0.05
wait_cs a Connected
t1=$(date +%s.%N)
after=$(status_json a | field "['sent_kib']")
resync_kib=$((after - before))
# The sync source's own measurement (its log), not the polling interval above.
resync_mibs=$(python3 - "$W/run-a/r.log" <<'PY'
import re, sys
m = re.findall(r"resync finished: (\d+) KiB in ([0-9.]+)(ms|s|µs)", open(sys.argv[1]).read())
kib, t, unit = m[-1]
secs = float(t) * {"s": 1, "ms": 1e-3, "µs": 1e-6}[unit]
print("%.0f" % (int(kib) / 1024 / secs))
PY
)
verify=$(br a verify)

ratio() { python3 -c "print('%.2f' % ($1/$2 if $2 else 0))"; }
echo
echo "block-repl (protocol C, peer over veth) vs plain loop, ext4, ${DEV_MB} MiB device, $(date -u +%F)"
printf "%-44s %12s %12s %8s\n" "workload" "plain loop" "block-repl" "ratio"
printf "%-44s %12s %12s %8s\n" "1 MiB seq write + final fsync (MiB/s)" "${R[plain-seqw]}" "${R[repl-seqw]}" "$(ratio "${R[repl-seqw]}" "${R[plain-seqw]}")"
printf "%-44s %12s %12s %8s\n" "4 KiB rand write QD16 direct (IOPS)" "${R[plain-randw]}" "${R[repl-randw]}" "$(ratio "${R[repl-randw]}" "${R[plain-randw]}")"
printf "%-44s %12s %12s %8s\n" "4 KiB write+fdatasync (mean us, lower=better)" "${R[plain-syncw]}" "${R[repl-syncw]}" "$(ratio "${R[plain-syncw]}" "${R[repl-syncw]}")"
# CPU per unit of work: what the whole machine spent (fio, file system, loop, FUSE,
# both daemons, TCP) divided by the work done. Ops for the timed jobs are derived from
# the result (IOPS x TIME, TIME / latency).
cpu() { python3 -c "
job, side, r, c, hz, t, mb = '$1', '$2', float('$3'), float('$4'), float('$HZ'), float('$TIME'), float('$SEQ_MB')
secs = c / hz
if r <= 0: print('-'); raise SystemExit
if job == 'seqw': print('%.2f' % (secs * 1000 / mb))
elif job == 'randw': print('%.1f' % (secs * 1e6 / (r * t)))
else: print('%.1f' % (secs * 1e6 / (t * 1e6 / r)))
"; }
printf "%-44s %12s %12s\n" "CPU, whole machine" "plain loop" "block-repl"
for job in seqw randw syncw; do
    unit=$([ $job = seqw ] && echo "ms per MiB" || echo "us per write")
    printf "%-44s %12s %12s\n" "  $job ($unit)" "$(cpu $job plain "${R[plain-$job]}" "${C[plain-$job]}")" "$(cpu $job repl "${R[repl-$job]}" "${C[repl-$job]}")"
done
echo "resync after disconnect: ${oos} KiB out of sync, ${resync_kib} KiB sent, ${resync_mibs} MiB/s (target >= 500)"
echo "verify: $verify"
