# bench-lib.sh -- sourced by the bench/*-vs-real.sh scripts. Expects $B (the bench base
# directory, mount at $B/run/mnt) and an array PIDS of the processes the script started.

# Refuses a $B outside /tmp and /var/tmp and a non-root user; then empties $B and makes
# RES=$B/results with an empty raw.tsv.
bench_prepare() {
  case "$B" in /tmp/?*|/var/tmp/?*) ;; *) echo "BENCH_BASE must be under /tmp or /var/tmp" >&2; exit 2 ;; esac
  [ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
  RES=$B/results
  rm -rf "$B"; mkdir -p "$RES"
  : > "$RES/raw.tsv"
}

say() { echo "[$(date +%T)] $*" >&2; }

# Starts a process in the background with its output appended to LOG; records its PID.
bg() { local log=$1; shift; ( cd / && exec "$@" ) >>"$log" 2>&1 & PIDS+=($!); }

# Unmounts $B/run/mnt and stops every recorded process (TERM, then KILL after 30 s).
stop_all() {
  local m=$B/run/mnt
  if mountpoint -q "$m" 2>/dev/null; then fusermount3 -u "$m" 2>/dev/null || umount -l "$m" || true; fi
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] || continue
    for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  PIDS=()
}
