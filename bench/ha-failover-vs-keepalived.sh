#!/usr/bin/env bash
# ha-failover-vs-keepalived.sh -- failover time after a hard crash of the VRRP master,
# real keepalived (the distribution's /usr/sbin/keepalived) and Antler's ha-agent with the
# same settings, side by side in one run, on a bridge LAN built from network namespaces.
#
# Topology (created here, removed on exit; only 192.0.2.0/24, nothing leaves the netns):
#   netns $NS-lan : br0 (STP off, forward_delay 0, mcast_snooping 0), ports vn1 vn2 vc1
#   netns $NS-n1  : eth0 192.0.2.1/24  02:00:00:00:00:01  master, priority 150
#   netns $NS-n2  : eth0 192.0.2.2/24  02:00:00:00:00:02  backup, priority 100
#   netns $NS-c1  : eth0 192.0.2.50/24 02:00:00:00:00:50  client / prober
#   VIP 192.0.2.100/24, virtual_router_id 51. IPv6 off in all namespaces.
#
# Settings: v2 = VRRPv2, advert_int 1 s, PASS auth; v3 = VRRPv3, advert_int 0.1 s.
# Fault: hard crash of the master on n1, as in docs keepalived-baseline "kill9":
#   keepalived: SIGSTOP the parent, SIGKILL the VRRP child, SIGKILL the parent
#   ha-agent:   SIGKILL (one process)
# Nothing cleans up, so n1's kernel keeps the VIP and keeps answering the client until
# n2's gratuitous ARP moves the client over.
#
# Metric ("reply n2", as in the baseline): time from the kill to the first ICMP echo
# reply from the VIP that carries n2's MAC, seen in c1. c1 pings the VIP every 10 ms
# (ping -i 0.01) and a small AF_PACKET sniffer in c1 (python3) records every echo
# reply from the VIP with its source MAC, every VRRP advert and every gratuitous ARP
# for the VIP, with kernel receive timestamps (SO_TIMESTAMPNS); no tcpdump needed.
# Resolution: the 10 ms ping interval.
# Also reported: the largest gap between echo replies (n1 keeps answering, so ~10-20 ms
# means no outage), and the protocol timer, which does not depend on the kill's phase:
# n1's last VRRP advert before the takeover -> n2's first gratuitous ARP, both as seen
# by the sniffer in c1 (the bridge floods the adverts to every port).
# Phase of the kill: "reply n2" is Master_Down_Interval (3.61 s for v2, 0.361 s for v3
# at priority 100) minus the time between n1's last advert and the kill, so a random
# phase alone would move medians by +-100 ms (v2). The kill is therefore timed by a small
# python3 helper in the bridge namespace: it waits for n1's next advert on n1's bridge
# port, sleeps a fixed offset after the advert's kernel timestamp, sends the signals and
# records the kill time. Trial i uses offset 0.9 x advert_int x (i - 0.5) / TRIALS, the
# same stratified offsets for both daemons, so the two columns are paired. The daemon
# measured first alternates from one setting to the next.
# Before every trial the cluster is restored (n1 restarted; it removes its leftover VIP
# and preempts) and checked: only n1 holds the VIP and c1's neighbour entry for the VIP
# is n1's MAC. Requires: keepalived, iproute2, iputils-ping, python3, cargo.
#
# Usage (root):  bench/ha-failover-vs-keepalived.sh
# Knobs: TRIALS [10]  VARIANTS ["v2 v3"]  IMPLS ["keepalived ha-agent"]
#        BENCH_BASE [/tmp/ha-failover-bench]  NS [hafb] (namespace prefix)
# Output: $BENCH_BASE/results/{raw.tsv,summary.md}, daemon logs in $BENCH_BASE/logs.
# Only processes this script started are stopped (by PID).
set -Eeuo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
REPO=$(pwd)
TRIALS=${TRIALS:-10}
VARIANTS=${VARIANTS:-"v2 v3"}
IMPLS=${IMPLS:-"keepalived ha-agent"}
B=${BENCH_BASE:-/tmp/ha-failover-bench}
NS=${NS:-hafb}
case "$B" in /tmp/?*|/var/tmp/?*|/run/?*) ;; *) echo "BENCH_BASE must be under /tmp, /var/tmp or /run" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
KEEPALIVED=$(command -v keepalived || echo /usr/sbin/keepalived)
[ -x "$KEEPALIVED" ] || { echo "keepalived not found (apt-get install keepalived)" >&2; exit 1; }
for t in ip ping python3 awk; do command -v $t >/dev/null || { echo "$t not found" >&2; exit 1; }; done
PY=$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3 )   # a real binary, not a shim: its PID is the prober's

cargo build --release -p antler-ha-agent >&2
HA=$REPO/target/release/ha-agent
# noted right after the build: the source state the binary was built from
ENV_NOTE="$(uname -sr), $(nproc) CPUs, $("$KEEPALIVED" --version 2>&1 | awk 'NR == 1'), ha-agent $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet -- ha-agent 2>/dev/null || echo '+local changes') (release build, started $(date -u '+%Y-%m-%d %H:%M') UTC)"

VIP=192.0.2.100
declare -A IP=([n1]=192.0.2.1 [n2]=192.0.2.2 [c1]=192.0.2.50)
declare -A MAC=([n1]=02:00:00:00:00:01 [n2]=02:00:00:00:00:02 [c1]=02:00:00:00:00:50)
declare -A PRIO=([n1]=150 [n2]=100)
declare -A STATE=([n1]=MASTER [n2]=BACKUP)
declare -A PIDS=()   # name -> PID of a process this script started

RUN=$B/run; LOGS=$B/logs; RES=$B/results
rm -rf "$B"; mkdir -p "$RUN" "$LOGS" "$RES"
chmod 755 "$B" "$RUN"
RAW=$RES/raw.tsv
printf 'variant\timpl\ttrial\tkill_epoch\tkill_after_advert_ms\treply_n2_ms\tadvert_to_garp_ms\tadvert_to_reply_n2_ms\tmax_reply_gap_ms\tn1_replies_after_kill\n' > "$RAW"

say() { echo "[$(date +%T.%3N)] $*" >&2; }
nsx() { local h=$1; shift; ip netns exec "$NS-$h" "$@"; }

# ------------------------------------------------------------------ processes (by PID only)
bg() { # name log cmd...  (the PID is the program itself: `ip netns exec` execs it)
  local name=$1 log=$2; shift 2
  "$@" >>"$log" 2>&1 &
  PIDS[$name]=$!
  disown "$!"   # no "Killed" job notices; bash still reaps it, see gone()
}
gone() { local i; for ((i = 0; i < 200; i++)); do alive "$1" || return 0; sleep 0.02; done; return 1; }
alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true); [ -n "$st" ] && [ "$st" != Z ]; }
ours() { # pid lives in one of our namespaces (guards against a reused PID)
  case "$(ip netns identify "$1" 2>/dev/null || true)" in "$NS"-*) return 0 ;; *) return 1 ;; esac
}
stop() { # name [signal] : signal, wait up to 5 s, then SIGKILL; reap
  local name=$1 sig=${2:-TERM} p i
  p=${PIDS[$name]:-}; [ -n "$p" ] || return 0
  unset "PIDS[$name]"
  if alive "$p" && ours "$p"; then
    kill -CONT "$p" 2>/dev/null || true
    kill -"$sig" "$p" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$p" || break; sleep 0.05; done
    alive "$p" && ours "$p" && kill -KILL "$p" 2>/dev/null
    gone "$p" || true
  fi
}

cleanup() {
  local n c
  set +e
  for n in "${!PIDS[@]}"; do
    case $n in
      ka-*) c=$(cat "$RUN/$n-vrrp.pid" 2>/dev/null)
            [ -n "$c" ] && alive "$c" && ours "$c" && kill -KILL "$c" 2>/dev/null ;;
    esac
    stop "$n" KILL
  done
  for n in c1 n1 n2 lan; do ip netns del "$NS-$n" 2>/dev/null; done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR

# ------------------------------------------------------------------ LAN
setup() {
  local ns h
  for ns in lan n1 n2 c1; do
    ip netns del "$NS-$ns" 2>/dev/null || true
    ip netns add "$NS-$ns"
    ip -n "$NS-$ns" link set lo up
    nsx $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip -n "$NS-lan" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
  ip -n "$NS-lan" link set br0 up
  for h in n1 n2 c1; do
    ip -n "$NS-lan" link add "v$h" type veth peer name eth0 netns "$NS-$h"
    ip -n "$NS-lan" link set "v$h" master br0 up
    ip -n "$NS-$h" link set eth0 address "${MAC[$h]}"
    nsx $h sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
    ip -n "$NS-$h" addr add "${IP[$h]}/24" dev eth0
    ip -n "$NS-$h" link set eth0 up
  done
  sleep 1
  nsx c1 ping -n -q -c 2 -i 0.2 -W 1 "${IP[n1]}" >/dev/null
  nsx c1 ping -n -q -c 2 -i 0.2 -W 1 "${IP[n2]}" >/dev/null
}

# ------------------------------------------------------------------ configs
ka_conf() { # node version advert_int
  local auth=""
  [ "$2" = 2 ] && auth="    authentication {
        auth_type PASS
        auth_pass s3cr3t
    }"
  cat <<EOF
global_defs {
    router_id ka-$1
    enable_script_security
    script_user root
    vrrp_version $2
}
vrrp_instance VI_1 {
    state ${STATE[$1]}
    interface eth0
    virtual_router_id 51
    priority ${PRIO[$1]}
    advert_int $3
$auth
    virtual_ipaddress {
        $VIP/24
    }
}
EOF
}
ha_conf() { # node version advert_int
  cat <<EOF
[global]
router_id = "$1"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = ${PRIO[$1]}
state = "${STATE[$1]}"
version = $2
advert_int = $3
virtual_ipaddress = ["$VIP/24"]
EOF
  [ "$2" = 2 ] && echo 'auth_pass = "s3cr3t"'
  return 0
}

# ------------------------------------------------------------------ daemons
start_node() { # impl node variant
  local impl=$1 n=$2 v=$3 i
  case $impl in
    keepalived)
      rm -f "$RUN/ka-$n".pid "$RUN/ka-$n"-{vrrp,chk,bfd}.pid
      bg "ka-$n" "$LOGS/keepalived-$v-$n.log" ip netns exec "$NS-$n" "$KEEPALIVED" -n -l -D -P -G \
        -f "$RUN/ka-$v-$n.conf" -p "$RUN/ka-$n.pid" -r "$RUN/ka-$n-vrrp.pid" \
        -c "$RUN/ka-$n-chk.pid" -b "$RUN/ka-$n-bfd.pid"
      for ((i = 0; i < 250; i++)); do [ -s "$RUN/ka-$n-vrrp.pid" ] && return 0; sleep 0.02; done
      say "keepalived on $n: no VRRP child pid file"; return 1 ;;
    ha-agent)
      bg "ha-$n" "$LOGS/ha-agent-$v-$n.log" ip netns exec "$NS-$n" "$HA" \
        -c "$RUN/ha-$v-$n.toml" --socket "$RUN/ha-$n.sock" ;;
  esac
}
# The crash is timed by killer.py, run in the bridge namespace: it waits for the next
# advert from the node on its bridge port, sleeps OFFSET seconds after that advert's
# kernel receive time, then sends the signals and prints "<kill time> <advert time>".
cat > "$RUN/killer.py" <<'PY'
import os, signal, socket, struct, sys, time
SO_TIMESTAMPNS = 35
port, src, off, mode = sys.argv[1], socket.inet_aton(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
pids = [int(x) for x in sys.argv[5:]]
# ETH_P_ALL: on a bridge port only "all protocols" taps see frames before the bridge takes them
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.bind((port, 0))
s.settimeout(0.2)
deadline = time.time() + 10
t_adv = None
while t_adv is None:
    if time.time() > deadline:
        sys.exit("killer: no advert from %s on %s" % (sys.argv[2], port))
    try:
        data, anc, _, _ = s.recvmsg(256, 64)
    except socket.timeout:
        continue
    ip = data[14:]
    if data[12:14] != b"\x08\x00" or len(ip) < 20 or ip[9] != 112 or ip[12:16] != src:
        continue
    t_adv = time.time()
    for lvl, typ, d in anc:
        if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", d[:16])
            t_adv = sec + nsec / 1e9
wait = t_adv + off - time.time()
if wait > 0:
    time.sleep(wait)
t0 = time.time()
if mode == "keepalived":      # STOP first: the parent cannot respawn the VRRP child
    parent, child = pids
    os.kill(parent, signal.SIGSTOP)
    os.kill(child, signal.SIGKILL)
    os.kill(parent, signal.SIGKILL)
else:
    os.kill(pids[0], signal.SIGKILL)
print("%.6f %.6f" % (t0, t_adv))
PY
crash_node() { # impl node offset_s -> sets T0 and TADV. No cleanup at all: the VIP stays.
  local impl=$1 n=$2 off=$3 p c pids
  case $impl in
    keepalived)
      p=${PIDS[ka-$n]}; c=$(cat "$RUN/ka-$n-vrrp.pid")
      ours "$p" && ours "$c" || { say "keepalived PIDs $p/$c not ours"; return 1; }
      pids="$p $c" ;;
    ha-agent)
      p=${PIDS[ha-$n]}
      ours "$p" || { say "ha-agent PID $p not ours"; return 1; }
      pids=$p ;;
  esac
  # shellcheck disable=SC2086
  ip netns exec "$NS-lan" "$PY" "$RUN/killer.py" "v$n" "${IP[$n]}" "$off" "$impl" $pids > "$RUN/kill.out"
  read -r T0 TADV < "$RUN/kill.out"
  gone "$p" || { say "PID $p still alive after SIGKILL"; return 1; }
  case $impl in keepalived) unset "PIDS[ka-$n]" ;; ha-agent) unset "PIDS[ha-$n]" ;; esac
}
stop_node() { # impl node (graceful)
  case $1 in keepalived) stop "ka-$2" TERM ;; ha-agent) stop "ha-$2" TERM ;; esac
}

has_vip() { [[ $(ip -n "$NS-$1" -4 addr show dev eth0) == *" $VIP/"* ]]; }
c1_mac() { ip -n "$NS-c1" neigh show "$VIP" | awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i+1)}'; }
wait_for() { # timeout_s description command... (polls every 20 ms)
  local lim=$(( $1 * 50 )) what=$2 i; shift 2
  for ((i = 0; i < lim; i++)); do "$@" && return 0; sleep 0.02; done
  say "timeout: $what"; return 1
}
only_n1() { has_vip n1 && ! has_vip n2; }
client_on() { # node : one ping, then c1's entry for the VIP must be that node's MAC
  nsx c1 ping -n -q -c 1 -W 1 "$VIP" >/dev/null 2>&1 || true
  [ "$(c1_mac)" = "${MAC[$1]}" ]
}
client_on_n1() { client_on n1; }
offset() { # advert_int trial -> kill offset after n1's advert: stratified over [0, 0.9 x advert_int)
  awk -v a="$1" -v i="$2" -v n="$TRIALS" 'BEGIN { printf "%.4f", 0.9 * a * (i - 0.5) / n }'
}

# ------------------------------------------------------------------ probe in c1
cat > "$RUN/sniff.py" <<'PY'
# One line per interesting frame seen by c1, with the kernel receive time (SO_TIMESTAMPNS):
#   R <t> <src MAC> <seq>   ICMP echo reply from the VIP
#   A <t> <src IP> <prio>   VRRP advert (IP protocol 112)
#   G <t> <src MAC>         gratuitous ARP for the VIP (sender IP = target IP = VIP)
import socket, struct, sys, time
SO_TIMESTAMPNS = 35
vip, deadline = socket.inet_aton(sys.argv[1]), time.time() + float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.bind(("eth0", 0))
s.settimeout(0.2)
print("ready", flush=True)
while time.time() < deadline:
    try:
        data, anc, _, addr = s.recvmsg(256, 64)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or len(data) < 42:
        continue
    t = time.time()
    for lvl, typ, d in anc:
        if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", d[:16])
            t = sec + nsec / 1e9
    mac = data[6:12].hex(":")
    etype = struct.unpack("!H", data[12:14])[0]
    if etype == 0x0806:
        if data[28:32] == vip and data[38:42] == vip:
            print("G %.6f %s" % (t, mac), flush=True)
        continue
    if etype != 0x0800:
        continue
    ip = data[14:]
    ihl = (ip[0] & 15) * 4
    if len(ip) < ihl + 8:
        continue
    if ip[9] == 112:
        print("A %.6f %s %d" % (t, socket.inet_ntoa(ip[12:16]), ip[ihl + 2]), flush=True)
    elif ip[9] == 1 and ip[12:16] == vip and ip[ihl] == 0:
        print("R %.6f %s %d" % (t, mac, struct.unpack("!H", ip[ihl + 6:ihl + 8])[0]), flush=True)
PY
probe_start() { # file deadline_s
  : > "$1"
  bg sniff "$1" ip netns exec "$NS-c1" "$PY" "$RUN/sniff.py" "$VIP" "$2"
  wait_for 10 "sniffer ready" grep -q ready "$1"
  bg ping /dev/null ip netns exec "$NS-c1" ping -n -q -i 0.01 -w "$2" "$VIP"
  sleep 0.3
}
probe_stop() { stop ping INT; stop sniff TERM; }
first_after() { # file kind t0 src -> time of the first line of that kind and source after t0
  awk -v k="$2" -v t0="$3" -v m="$4" '$1 == k && $2 > t0 && $3 == m { print $2; exit }' "$1"
}
have_n2_reply() { [ -n "$(first_after "$1" R "$2" "${MAC[n2]}")" ]; }

# ------------------------------------------------------------------ one setting
run_phase() { # variant impl
  local v=$1 impl=$2 ver adv trial t0 tn2 tg ta ms gap n1after f off phase wire adv_reply
  case $v in v2) ver=2 adv=1 ;; v3) ver=3 adv=0.1 ;; esac
  for n in n1 n2; do
    ka_conf $n $ver $adv > "$RUN/ka-$v-$n.conf"
    ha_conf $n $ver $adv > "$RUN/ha-$v-$n.toml"
  done
  "$HA" check-config "$RUN/ha-$v-n1.toml" >/dev/null
  say "$v $impl: VRRPv$ver advert_int $adv s, $TRIALS trials"
  ip -n "$NS-n1" addr del "$VIP/24" dev eth0 2>/dev/null || true
  ip -n "$NS-n2" addr del "$VIP/24" dev eth0 2>/dev/null || true
  start_node "$impl" n2 $v
  sleep 0.2
  start_node "$impl" n1 $v
  for ((trial = 1; trial <= TRIALS; trial++)); do
    wait_for 30 "$v $impl trial $trial: n1 alone holds the VIP" only_n1
    wait_for 30 "$v $impl trial $trial: client resolves the VIP to n1" client_on_n1
    sleep 1.5
    only_n1 || { say "VIP moved during settling"; return 1; }
    f=$RES/$v-$impl-$trial.frames
    probe_start "$f" 60
    off=$(offset $adv $trial)
    crash_node "$impl" n1 "$off"
    t0=$T0
    phase=$(awk -v a="$TADV" -v b="$T0" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
    ms=NA gap=NA n1after=NA wire=NA adv_reply=NA
    if wait_for 30 "$v $impl trial $trial: reply from n2" have_n2_reply "$f" "$t0"; then
      sleep 0.2
      tn2=$(first_after "$f" R "$t0" "${MAC[n2]}")
      ms=$(awk -v a="$t0" -v b="$tn2" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
      # largest gap between consecutive echo replies, from the last reply before the
      # kill up to the first reply from n2
      gap=$(awk -v t0="$t0" -v t1="$tn2" '$1 != "R" { next }
        { if ($2 <= t0) { prev = $2; next }
          if ($2 > t1) exit
          if (prev != "" && $2 - prev > g) g = $2 - prev; prev = $2 }
        END { printf "%.1f", g * 1000 }' "$f")
      n1after=$(awk -v t0="$t0" -v m="${MAC[n1]}" '$1 == "R" && $2 > t0 && $3 == m { c++ } END { print c + 0 }' "$f")
      # protocol timer, independent of the kill's phase: n1's last advert before n2's
      # first gratuitous ARP -> that ARP
      tg=$(first_after "$f" G "$t0" "${MAC[n2]}")
      if [ -n "$tg" ]; then
        ta=$(awk -v tg="$tg" -v src="${IP[n1]}" '$1 == "A" && $3 == src && $2 < tg { last = $2 } END { print last }' "$f")
        if [ -n "$ta" ]; then
          wire=$(awk -v a="$ta" -v b="$tg" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
          adv_reply=$(awk -v a="$ta" -v b="$tn2" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
        fi
      fi
    fi
    probe_stop
    printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$v" "$impl" "$trial" "$t0" "$phase" "$ms" "$wire" "$adv_reply" "$gap" "$n1after" >> "$RAW"
    say "$v $impl trial $trial: kill $phase ms after n1's advert; kill -> reply from n2 $ms ms; n1's last advert -> n2 GARP $wire ms, -> reply from n2 $adv_reply ms (max reply gap $gap ms, n1 replies after kill: $n1after)"
    # restore: n1 starts again, removes its leftover VIP, and preempts
    start_node "$impl" n1 $v
  done
  wait_for 30 "$v $impl: n1 back" only_n1 || true
  stop_node "$impl" n1
  stop_node "$impl" n2
}

# ------------------------------------------------------------------ main
say "building the LAN ($NS-lan/n1/n2/c1)"
setup
order=$IMPLS
for v in $VARIANTS; do
  for impl in $order; do
    run_phase "$v" "$impl"
  done
  order=$(printf '%s\n' $order | tac | xargs)   # alternate which daemon goes first
done

"$PY" - "$RAW" "$TRIALS" "$ENV_NOTE" > "$RES/summary.md" <<'PY'
import sys, csv, statistics, datetime
raw, trials, env = sys.argv[1], sys.argv[2], sys.argv[3]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
def vals(v, impl, k):
    return [float(r[k]) for r in rows if r["variant"] == v and r["impl"] == impl and r[k] != "NA"]
def missing(v, impl, k):
    return sum(1 for r in rows if r["variant"] == v and r["impl"] == impl and r[k] == "NA")
name = {"v2": "VRRPv2, advert_int 1 s, PASS", "v3": "VRRPv3, advert_int 0.1 s"}
med = statistics.median
print(f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Trials per cell: {trials}. {env}")
# resolution of each metric: the 10 ms ping interval, or the capture (~0.1 ms) for the protocol timer
metrics = (("reply_n2_ms", 10.0, "kill -9 of the master (n1, prio 150) -> first echo reply from n2's MAC at the client"),
           ("advert_to_reply_n2_ms", 10.0, "n1's last advert before the takeover -> first echo reply from n2's MAC (phase-independent)"),
           ("advert_to_garp_ms", 0.5, "protocol timer: n1's last advert before the takeover -> n2's first gratuitous ARP (seen at c1)"))
def verdict(h, k, res):
    d = round(h - k, 1) + 0.0   # + 0.0: no "-0.0"
    if d <= 0:
        return f"yes ({d:+.1f} ms)"
    if d <= res:
        return f"equal within resolution ({d:+.1f} ms)"
    return f"NO ({d:+.1f} ms)"
for key, res, title in metrics:
    cell = (lambda x: f"{med(x):.1f} / {min(x):.1f} / {max(x):.1f}" if x else "n/a") if res < 1 else \
           (lambda x: f"{med(x):.0f} / {min(x):.0f} / {max(x):.0f}" if x else "n/a")
    print()
    print(f"{title}, ms, median / min / max:")
    print()
    print("| setting | keepalived | ha-agent | ratio ha-agent/keepalived: median | max | targets |")
    print("|---|---|---|---|---|---|")
    for v in ("v2", "v3"):
        k, h = vals(v, "keepalived", key), vals(v, "ha-agent", key)
        if not k and not h:
            continue
        note = lambda impl: f" ({missing(v, impl, key)} trials n/a)" if missing(v, impl, key) else ""
        rm = f"{med(h) / med(k):.2f}" if k and h else "n/a"
        rx = f"{max(h) / max(k):.2f}" if k and h else "n/a"
        t = []
        if k and h:
            t.append(f"median <= keepalived: {verdict(med(h), med(k), res)}")
        if v == "v3" and h and key in ("reply_n2_ms", "advert_to_reply_n2_ms"):
            t.append(f"max <= 400 ms: {'yes' if max(h) <= 400 else 'NO'}")
        print(f"| {name[v]} | {cell(k)}{note('keepalived')} | {cell(h)}{note('ha-agent')} | {rm} | {rx} | {'; '.join(t) or 'n/a'} |")
print()
print("Largest gap between echo replies from the kill to the first reply from n2 (ms, median / max): " + "; ".join(
    f"{v} {impl} {med(g):.0f} / {max(g):.0f}" for v in ("v2", "v3") for impl in ("keepalived", "ha-agent")
    if (g := vals(v, impl, "max_reply_gap_ms"))) + ". The killed master's kernel keeps the VIP and answers until n2's GARP, so ~20 ms means no outage.")
PY
cat "$RES/summary.md"
say "raw data: $RAW"
