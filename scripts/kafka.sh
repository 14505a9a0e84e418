#!/usr/bin/env bash
# Single-node Apache Kafka broker (KRaft combined mode) for tests and CI.
#
# Runs the real broker from the org.apache.kafka:kafka_2.13 jars on Maven
# Central (resolved with mvn via scripts/kafka/pom.xml); no docker, no tarball.
#
# Usage: scripts/kafka.sh <command>
#   up       resolve jars (once, cached), wipe + format a fresh data dir, start
#            the broker and wait until it serves metadata. No-op if running.
#   down     stop the broker (SIGTERM, then SIGKILL after 30 s). Idempotent.
#   status   exit 0 if the broker is running and answering, else 1.
#   pause    stop the broker but keep its data (simulated outage).
#   resume   start the broker again on the same data dir and wait until ready.
#   logs     tail the broker log (extra args go to tail, default -n 100).
#   topics   run TopicCommand against the broker, e.g. `topics --list`.
#   tool     run any main class from the jars, e.g.
#            `tool org.apache.kafka.tools.consumer.ConsoleConsumer --help`.
#
# Environment (all optional):
#   KAFKA_VERSION          broker version (default 4.1.1; 4.0.x also works)
#   KAFKA_PORT             PLAINTEXT listener port (default 19092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default 19093)
#   KAFKA_NUM_PARTITIONS   num.partitions for auto-created topics (default 4)
#   KAFKA_HEAP_OPTS        broker heap (default "-Xms256m -Xmx512m")
#   KAFKA_READY_TIMEOUT    seconds to wait for readiness (default 90)
#   KAFKA_EXTRA_PROPERTIES newline-separated lines appended to server.properties
#   UNDERSTANDING_CACHE    cache root (default ~/.cache/understanding);
#                          jars go to $UNDERSTANDING_CACHE/kafka/<version>/libs
#   UNDERSTANDING_KAFKA_DIR run dir: config, data/, kafka.log, kafka.pid
#                          (default $UNDERSTANDING_CACHE/kafka/run)
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_NUM_PARTITIONS="${KAFKA_NUM_PARTITIONS:-4}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}"
HOST=127.0.0.1

UNDERSTANDING_CACHE="${UNDERSTANDING_CACHE:-$HOME/.cache/understanding}"
VERSION_DIR="$UNDERSTANDING_CACHE/kafka/$KAFKA_VERSION"
LIBS="$VERSION_DIR/libs"
STAMP="$LIBS/.complete"
RUN_DIR="${UNDERSTANDING_KAFKA_DIR:-$UNDERSTANDING_CACHE/kafka/run}"
DATA_DIR="$RUN_DIR/data"
PROPS="$RUN_DIR/server.properties"
LOG4J="$RUN_DIR/log4j2.properties"
TOOLS_LOG4J="$RUN_DIR/tools-log4j2.properties"
TOOLS_PROPS="$RUN_DIR/tools.properties"
PID_FILE="$RUN_DIR/kafka.pid"
LOG_FILE="$RUN_DIR/kafka.log"
LOCK_FILE="$RUN_DIR/.lock"

# Fast-starting JVM for short-lived CLI tools.
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
  -Djava.awt.headless=true)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- helpers --

with_lock() {
  # Serialise up/down/pause/resume on the same run dir. fd 9 is closed for
  # the broker process (see start_broker) so the lock is not inherited.
  mkdir -p "$RUN_DIR"
  exec 9>"$LOCK_FILE"
  flock -w 300 9 || die "could not lock $LOCK_FILE"
}

port_open() { # port
  timeout 2 bash -c "</dev/tcp/$HOST/$1" 2>/dev/null
}

# Speak the Kafka protocol: ApiVersions v0 request, expect a response with
# our correlation id. Cheap (no JVM) proof that a Kafka broker is answering.
kafka_answers() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    # size=15 | api_key=18 | api_version=0 | correlation_id=0x4b41 | client_id="probe"
    printf "\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x4b\x41\x00\x05probe" >&3
    hdr=$(head -c 8 <&3 | od -An -tx1 | tr -d " \n")
    [[ ${#hdr} -eq 16 && ${hdr:8:8} == 00004b41 ]]
  ' "$HOST" "$KAFKA_PORT" 2>/dev/null
}

# Is $1 a live broker process started from this run dir?
is_our_broker() { # pid
  local pid="$1" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *kafka.Kafka*"$PROPS"* ]]
}

# Print the broker pid (from the pid file, else by scanning /proc for a java
# process running kafka.Kafka with our server.properties), or return 1.
broker_pid() {
  local pid=""
  if [[ -f "$PID_FILE" ]]; then
    pid="$(<"$PID_FILE")"
    if is_our_broker "$pid"; then echo "$pid"; return 0; fi
  fi
  local f
  while IFS= read -r f; do
    pid="${f#/proc/}"; pid="${pid%/cmdline}"
    if is_our_broker "$pid"; then echo "$pid"; return 0; fi
  done < <(grep -lsaF -- "$PROPS" /proc/[0-9]*/cmdline 2>/dev/null || true)
  return 1
}

libs_complete() {
  local want have=""
  want="$KAFKA_VERSION $(sha256sum "$POM" | cut -d' ' -f1)"
  [[ -f "$STAMP" ]] && have="$(<"$STAMP")"
  [[ "$have" == "$want" ]]
}

resolve_libs() {
  libs_complete && return 0
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch Kafka $KAFKA_VERSION jars)"
  # Per-version lock: run dirs differ between parallel users, the jars don't.
  mkdir -p "$VERSION_DIR"
  exec 8>"$VERSION_DIR/.lock"
  flock -w 600 8 || die "could not lock $VERSION_DIR/.lock"
  if libs_complete; then exec 8>&-; return 0; fi
  log "resolving Kafka $KAFKA_VERSION jars into $LIBS (one-time)"
  local want
  want="$KAFKA_VERSION $(sha256sum "$POM" | cut -d' ' -f1)"
  local tmp="$VERSION_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  local mvn_log="$VERSION_DIR/mvn.log"
  if ! mvn -B -Dstyle.color=never -f "$POM" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    tail -n 40 "$mvn_log" >&2
    rm -rf "$tmp"
    die "mvn dependency resolution failed (full log: $mvn_log)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after resolution"; }
  echo "$want" >"$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  exec 8>&-
}

run_tool() { # main-class args...
  local cls="$1"; shift
  java "${TOOL_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
    -cp "$LIBS/*" "$cls" "$@"
}

random_cluster_id() {
  # Kafka Uuid: 16 random bytes, base64url without padding (22 chars). Avoid
  # a leading '-' (the CLI would read it as an option), like Uuid.randomUuid.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && ${#id} -eq 22 ]] && { echo "$id"; return; }
  done
}

write_config() {
  mkdir -p "$RUN_DIR"
  cat >"$PROPS" <<EOF
# Generated by scripts/kafka.sh -- rewritten on every 'up'.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA_DIR

# single node: everything replicated once
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# test-friendly behaviour
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=$KAFKA_NUM_PARTITIONS
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=16777216
log.retention.hours=24
log.retention.check.interval.ms=60000
log.cleaner.dedupe.buffer.size=16777216
EOF
  if [[ -n "$KAFKA_EXTRA_PROPERTIES" ]]; then
    printf '\n# KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$PROPS"
  fi

  # Kafka 4.x logs via slf4j -> log4j2; without a config log4j2 only prints
  # ERRORs. The broker's stdout is redirected to kafka.log.
  cat >"$LOG4J" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.statechange.name = state.change.logger
logger.statechange.level = warn
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = warn
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = warn
EOF
  cat >"$TOOLS_LOG4J" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = err
EOF
  cat >"$TOOLS_PROPS" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

format_storage() {
  # Only ever delete the data dir we own, never $RUN_DIR itself.
  rm -rf -- "$DATA_DIR"
  mkdir -p "$DATA_DIR"
  local cid
  cid="$(random_cluster_id)"
  # kafka.tools.StorageTool lives in kafka_2.13 (core) in 4.0 and 4.1.
  run_tool kafka.tools.StorageTool format -t "$cid" -c "$PROPS" >/dev/null \
    || die "storage format failed"
}

start_broker() {
  [[ -f "$DATA_DIR/meta.properties" ]] || die "no formatted data in $DATA_DIR (run 'up' first)"
  if port_open "$KAFKA_PORT"; then
    die "port $KAFKA_PORT is already in use by another process"
  fi
  if port_open "$KAFKA_CONTROLLER_PORT"; then
    die "port $KAFKA_CONTROLLER_PORT is already in use by another process"
  fi
  printf '\n===== %s starting kafka %s =====\n' "$(date -Is)" "$KAFKA_VERSION" >>"$LOG_FILE"
  # setsid: own session, so ^C / process-group kills of the caller don't take
  # the broker down. The inner bash records its pid and execs java (same pid).
  # shellcheck disable=SC2086
  setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
    java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$RUN_DIR" \
      -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$LOG_FILE" 2>&1 8>&- 9>&- &
  local i
  for i in $(seq 50); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
}

wait_ready() {
  local deadline=$((SECONDS + KAFKA_READY_TIMEOUT)) pid
  while :; do
    if ! pid="$(broker_pid)"; then
      log "broker process exited during startup; last log lines:"
      tail -n 40 "$LOG_FILE" >&2 || true
      exit 1
    fi
    if port_open "$KAFKA_PORT" &&
       run_tool org.apache.kafka.tools.TopicCommand \
         --bootstrap-server "$HOST:$KAFKA_PORT" --command-config "$TOOLS_PROPS" \
         --list >/dev/null 2>&1; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      log "broker not ready after ${KAFKA_READY_TIMEOUT}s (pid $pid); last log lines:"
      tail -n 40 "$LOG_FILE" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

stop_broker() {
  local pid i
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "broker (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PID_FILE"
}

# ---------------------------------------------------------------- commands --

cmd_up() {
  with_lock
  local pid
  if pid="$(broker_pid)"; then
    if port_open "$KAFKA_PORT" && kafka_answers; then
      echo "kafka already running on $HOST:$KAFKA_PORT (pid $pid)"
      return 0
    fi
    log "broker pid $pid is alive but not answering; restarting fresh"
    stop_broker
  fi
  command -v java >/dev/null || die "java not found on PATH (Java 17+ required)"
  resolve_libs
  write_config
  : >"$LOG_FILE"
  format_storage
  start_broker
  wait_ready
  echo "kafka ready on $HOST:$KAFKA_PORT"
}

cmd_down() {
  with_lock
  if broker_pid >/dev/null; then
    stop_broker
    echo "kafka stopped"
  else
    rm -f "$PID_FILE"
    echo "kafka not running"
  fi
}

cmd_status() {
  local pid
  if pid="$(broker_pid)" && port_open "$KAFKA_PORT" && kafka_answers; then
    echo "kafka running on $HOST:$KAFKA_PORT (pid $pid)"
    return 0
  fi
  echo "kafka not running"
  return 1
}

cmd_pause() {
  with_lock
  if broker_pid >/dev/null; then
    stop_broker
    echo "kafka paused (data kept in $DATA_DIR)"
  else
    echo "kafka not running"
  fi
}

cmd_resume() {
  with_lock
  local pid
  if pid="$(broker_pid)"; then
    echo "kafka already running on $HOST:$KAFKA_PORT (pid $pid)"
    return 0
  fi
  [[ -f "$STAMP" ]] || die "jars not resolved; run 'up' first"
  [[ -f "$PROPS" ]] || die "no $PROPS; run 'up' first"
  start_broker
  wait_ready
  echo "kafka ready on $HOST:$KAFKA_PORT"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    pause) cmd_pause ;;
    resume) cmd_resume ;;
    logs) [[ $# -gt 0 ]] || set -- -n 100; tail "$@" "$LOG_FILE" ;;
    topics)
      [[ -f "$STAMP" ]] || die "jars not resolved; run 'up' first"
      run_tool org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$HOST:$KAFKA_PORT" "$@" ;;
    tool)
      [[ $# -gt 0 ]] || die "usage: $0 tool <main-class> [args...]"
      [[ -f "$STAMP" ]] || die "jars not resolved; run 'up' first"
      run_tool "$@" ;;
    *)
      if [[ "$cmd" == "-h" || "$cmd" == "--help" || "$cmd" == help ]]; then
        usage; exit 0
      fi
      [[ -n "$cmd" ]] && log "unknown command: $cmd"
      usage >&2; exit 2 ;;
  esac
}

main "$@"
