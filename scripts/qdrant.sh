#!/usr/bin/env bash
# Single-node Qdrant server for tests, benchmarks and CI.
#
# Runs the Qdrant server binary that sits beside the checkout in
# ../shared/tools/qdrant/qdrant (read-only: run in place, nothing is written
# beside it). Users run their own Qdrant server or cluster (see README).
#
# Usage: scripts/qdrant.sh <command>
#   up       start a server on loopback with a fresh, empty storage directory and
#            wait until /readyz answers. No-op if our server is already running.
#   down     stop it (SIGTERM, then SIGKILL after 30 s) and delete its storage. Idempotent.
#   status   exit 0 if our server is running and ready, else 1.
#   url      print the REST URL (export UNDERSTANDING_TEST_QDRANT_URL=$(scripts/qdrant.sh url)).
#   logs     tail the server log (extra args go to tail, default -n 100).
#
# Environment (all optional):
#   UNDERSTANDING_QDRANT_BIN  the server binary (default <repo>/../shared/tools/qdrant/qdrant)
#   QDRANT_HTTP_PORT          REST port (default 16333)
#   QDRANT_GRPC_PORT          gRPC port (default 16334)
#   QDRANT_READY_TIMEOUT      seconds to wait for /readyz (default 60)
#   UNDERSTANDING_CACHE       cache root (default ~/.cache/understanding)
#   UNDERSTANDING_QDRANT_DIR  run dir: storage/, snapshots/, qdrant.log, qdrant.pid
#                             (default $UNDERSTANDING_CACHE/qdrant/run)
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"

QDRANT_BIN="${UNDERSTANDING_QDRANT_BIN:-$(dirname "$ROOT")/shared/tools/qdrant/qdrant}"
QDRANT_HTTP_PORT="${QDRANT_HTTP_PORT:-16333}"
QDRANT_GRPC_PORT="${QDRANT_GRPC_PORT:-16334}"
QDRANT_READY_TIMEOUT="${QDRANT_READY_TIMEOUT:-60}"
HOST=127.0.0.1

UNDERSTANDING_CACHE="${UNDERSTANDING_CACHE:-$HOME/.cache/understanding}"
RUN_DIR="${UNDERSTANDING_QDRANT_DIR:-$UNDERSTANDING_CACHE/qdrant/run}"
STORAGE="$RUN_DIR/storage"
PID_FILE="$RUN_DIR/qdrant.pid"
LOG_FILE="$RUN_DIR/qdrant.log"
LOCK_FILE="$RUN_DIR/.lock"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
log() { printf 'qdrant.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

with_lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$LOCK_FILE"
  flock -w 120 9 || die "could not lock $LOCK_FILE"
}

port_open() { timeout 2 bash -c "</dev/tcp/$HOST/$1" 2>/dev/null; }

ready() { curl -fsS --max-time 2 "http://$HOST:$QDRANT_HTTP_PORT/readyz" >/dev/null 2>&1; }

# Is $1 a live qdrant process started from this run dir?
is_ours() { # pid
  local pid="$1"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$RUN_DIR" ]]
}

server_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(<"$PID_FILE")"
  is_ours "$pid" && { echo "$pid"; return 0; }
  return 1
}

start_server() {
  [[ -x "$QDRANT_BIN" ]] || die "no Qdrant server binary at $QDRANT_BIN (set UNDERSTANDING_QDRANT_BIN)"
  port_open "$QDRANT_HTTP_PORT" && die "port $QDRANT_HTTP_PORT is already in use by another process"
  port_open "$QDRANT_GRPC_PORT" && die "port $QDRANT_GRPC_PORT is already in use by another process"
  mkdir -p "$STORAGE" "$RUN_DIR/snapshots"
  printf '\n===== %s starting %s =====\n' "$(date -Is)" "$QDRANT_BIN" >>"$LOG_FILE"
  # cwd = run dir: the server looks for ./config and writes ./snapshots and
  # ./.qdrant-initialized relative to it, never beside the binary.
  (
    cd "$RUN_DIR"
    QDRANT__SERVICE__HOST=$HOST \
    QDRANT__SERVICE__HTTP_PORT=$QDRANT_HTTP_PORT \
    QDRANT__SERVICE__GRPC_PORT=$QDRANT_GRPC_PORT \
    QDRANT__STORAGE__STORAGE_PATH="$STORAGE" \
    QDRANT__STORAGE__SNAPSHOTS_PATH="$RUN_DIR/snapshots" \
    QDRANT__TELEMETRY_DISABLED=true \
    setsid nohup "$QDRANT_BIN" </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    echo $! >"$PID_FILE"
  )
}

wait_ready() {
  local deadline=$((SECONDS + QDRANT_READY_TIMEOUT))
  until ready; do
    if ! server_pid >/dev/null; then
      log "server exited during start-up; last log lines:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "server not ready after ${QDRANT_READY_TIMEOUT}s; last log lines:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

stop_server() {
  local pid i
  if pid="$(server_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "server (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PID_FILE"
}

cmd_up() {
  with_lock
  local pid
  if pid="$(server_pid)" && ready; then
    echo "qdrant already running on http://$HOST:$QDRANT_HTTP_PORT (grpc $QDRANT_GRPC_PORT, pid $pid)"
    return 0
  fi
  stop_server
  # Only ever delete the storage we own.
  rm -rf -- "$STORAGE" "$RUN_DIR/snapshots"
  : >"$LOG_FILE"
  start_server
  wait_ready
  echo "qdrant ready on http://$HOST:$QDRANT_HTTP_PORT (grpc $QDRANT_GRPC_PORT)"
}

cmd_down() {
  with_lock
  if server_pid >/dev/null; then
    stop_server
    echo "qdrant stopped"
  else
    rm -f "$PID_FILE"
    echo "qdrant not running"
  fi
  rm -rf -- "$STORAGE" "$RUN_DIR/snapshots"
}

cmd_status() {
  local pid
  if pid="$(server_pid)" && ready; then
    echo "qdrant running on http://$HOST:$QDRANT_HTTP_PORT (grpc $QDRANT_GRPC_PORT, pid $pid)"
    return 0
  fi
  echo "qdrant not running"
  return 1
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    url) echo "http://$HOST:$QDRANT_HTTP_PORT" ;;
    logs) [[ $# -gt 0 ]] || set -- -n 100; tail "$@" "$LOG_FILE" ;;
    -h | --help | help) usage ;;
    *)
      [[ -n "$cmd" ]] && log "unknown command: $cmd"
      usage >&2
      exit 2 ;;
  esac
}

main "$@"
