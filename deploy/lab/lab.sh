#!/usr/bin/env bash
# lab.sh -- a MooseFS cluster with Antler daemons on one machine (loopback).
#
#   lab.sh up       build Antler, start a real mfsmaster (Antler's master is not written
#                   yet), three Antler chunkservers and a real mfsmount at $LAB_BASE/mnt
#   lab.sh status   show processes, registered chunkservers and the mount
#   lab.sh down     unmount and stop exactly the processes 'up' started (by PID)
#
# LAB_BASE [/tmp/antler-lab]  LAB_PORT0 [29419] (master ports PORT0..PORT0+2,
# chunkservers PORT0+3..PORT0+5)
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
B=${LAB_BASE:-/tmp/antler-lab}
# shellcheck source=mfs-cluster.sh
. "$REPO/deploy/lab/mfs-cluster.sh"
P0=${LAB_PORT0:-29419}
case "$B" in /tmp/?*|/var/tmp/?*|/srv/?*) ;; *) echo "LAB_BASE must be under /tmp, /var/tmp or /srv" >&2; exit 2 ;; esac

need() {
  local missing=()
  for c in mfsmaster mfsmount mfscli fusermount3; do command -v "$c" >/dev/null || missing+=("$c"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing: ${missing[*]}; install: apt-get install moosefs-master moosefs-client moosefs-cli fuse3" >&2
    exit 1
  fi
}

start_bg() {  # name cmd...
  local name=$1; shift
  ( cd / && exec "$@" ) >> "$B/logs/$name.log" 2>&1 &
  echo $! > "$B/pids/$name.pid"
}

alive() { [ -f "$B/pids/$1.pid" ] && kill -0 "$(cat "$B/pids/$1.pid")" 2>/dev/null; }


up() {
  [ "$(id -u)" = 0 ] || { echo "run as root (FUSE mount)" >&2; exit 1; }
  need
  if [ -d "$B/pids" ] && compgen -G "$B/pids/*.pid" >/dev/null; then
    for f in "$B"/pids/*.pid; do kill -0 "$(cat "$f")" 2>/dev/null && { echo "lab already running ($B); '$0 down' first" >&2; exit 1; }; done
  fi
  cargo build --release -p antler-chunkserver
  rm -rf "$B"; mkdir -p "$B"/{logs,pids,mnt}
  write_master_cfg "$B" "$P0"
  start_bg master mfsmaster -c "$B/etc/mfsmaster.cfg" -f start
  for _ in $(seq 1 100); do ss -Hltn "sport = :$((P0+2))" | grep -q . && break; sleep 0.1; done
  local i
  for i in 1 2 3; do
    write_cs_cfg "$B" "$P0" "$i"
    start_bg "cs$i" "$REPO/target/release/mfschunkserver" -c "$B/etc/mfschunkserver$i.cfg" -f start
  done
  for _ in $(seq 1 300); do [ "$(cs_registered "$P0")" -ge 3 ] && break; sleep 0.1; done
  start_bg mount mfsmount "$B/mnt" -f -H 127.0.0.1 -P $((P0+2))
  for _ in $(seq 1 100); do mountpoint -q "$B/mnt" && break; sleep 0.1; done
  mountpoint -q "$B/mnt" || { echo "mount failed; see $B/logs/mount.log" >&2; exit 1; }
  status
  echo "lab up: files at $B/mnt; logs in $B/logs; stop with: $0 down"
}

status() {
  local n
  for n in master cs1 cs2 cs3 mount; do
    if alive "$n"; then echo "$n: running (pid $(cat "$B/pids/$n.pid"))"; else echo "$n: not running"; fi
  done
  echo "chunkservers registered with the master: $(cs_registered "$P0")"
  mountpoint -q "$B/mnt" 2>/dev/null && echo "mounted: $B/mnt" || echo "not mounted"
}

down() {
  if mountpoint -q "$B/mnt" 2>/dev/null; then fusermount3 -u "$B/mnt" || umount -l "$B/mnt" || true; fi
  local n p
  for n in mount cs1 cs2 cs3 master; do
    alive "$n" || continue
    p=$(cat "$B/pids/$n.pid")
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
    rm -f "$B/pids/$n.pid"
  done
  echo "lab down (data kept in $B)"
}

case ${1:-} in
  up) up ;;
  status) status ;;
  down) down ;;
  *) echo "usage: $0 up|status|down" >&2; exit 2 ;;
esac
