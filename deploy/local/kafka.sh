#!/usr/bin/env bash
# kafka.sh — run a real single-node Apache Kafka broker (KRaft, broker+controller)
# for the test suite, from jars resolved out of Maven Central (see pom.xml).
#
#   usage: kafka.sh up|down|status
#
# Environment:
#   OPSWATCH_CACHE                   cache dir (default: <repo>/.cache)
#   OPSWATCH_KAFKA_LIBS              jars dir (default: $OPSWATCH_CACHE/kafka-libs), so a
#                                    second broker with a cache of its own shares the jars
#   OPSWATCH_PYTHON                  python used for the health check (default: python3);
#                                    when it cannot `import kafka` (kafka-python), the
#                                    Java console tools from the resolved jars are used
#   OPSWATCH_KAFKA_PORT              PLAINTEXT port (default 9092)
#   OPSWATCH_KAFKA_CONTROLLER_PORT   CONTROLLER port (default 9093)
#   OPSWATCH_KAFKA_SASL_SSL_PORT     when set, also a SASL_SSL listener on this port (SCRAM-SHA-512
#                                    only, the server certificate signed by a CA made on every
#                                    `up` into $OPSWATCH_CACHE/tls/ca.pem, for 127.0.0.1 and localhost)
#   OPSWATCH_KAFKA_SSL_PORT          when set, also an SSL listener on this port that requires a client
#                                    certificate signed by that CA ($OPSWATCH_CACHE/tls/client.pem and
#                                    client.key are made for the tests, mutual TLS)
#   OPSWATCH_KAFKA_SCRAM_USERS       SCRAM-SHA-512 users of that listener, `name:password` separated
#                                    by spaces (default opswatch:opswatch-local-secret), created when
#                                    the storage is formatted (a changed list formats it again)
#   OPSWATCH_KAFKA_START_TIMEOUT     seconds to wait for a healthy broker (default 90)
#   OPSWATCH_KAFKA_JVM_OPTS          extra JVM options for the broker (appended)
#
# Cache layout ($OPSWATCH_CACHE):
#   kafka-libs/         jars (mvn dependency:copy-dependencies, once; .resolved marker)
#   kafka-data/         KRaft metadata + log dirs (formatted once)
#   kafka-cluster-id    the cluster id the data dir was formatted with
#   server.properties   generated on every `up`
#   kafka.pid           pid of the running broker (the java process itself)
#   kafka.log           broker stdout+stderr (previous run: kafka.log.1)
#
# Exit codes: 0 ok / running, 1 error, 3 stopped (status), 4 alive but unhealthy (status).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE="${OPSWATCH_CACHE:-$REPO/.cache}"
PYTHON="${OPSWATCH_PYTHON:-python3}"

HOST=127.0.0.1
PORT="${OPSWATCH_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${OPSWATCH_KAFKA_CONTROLLER_PORT:-9093}"
BOOTSTRAP="$HOST:$PORT"
START_TIMEOUT="${OPSWATCH_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30
HEALTH_TOPIC=opswatch-healthcheck
# The Java check needs a 1-partition topic (it reads its token back from partition 0),
# so it never shares the Python check's topic, which may be auto-created with 4.
HEALTH_TOPIC_1P=opswatch-healthcheck-1p

POM="$SCRIPT_DIR/pom.xml"
LOG4J_CONF="$SCRIPT_DIR/log4j2.properties"
LIBS="${OPSWATCH_KAFKA_LIBS:-$CACHE/kafka-libs}"
LIBS_MARKER="$LIBS/.resolved"
DATA="$CACHE/kafka-data"
FORMAT_STAMP="$DATA/.opswatch-format"
CLUSTER_ID_FILE="$CACHE/kafka-cluster-id"
PROPS="$CACHE/server.properties"
PID_FILE="$CACHE/kafka.pid"
SASL_SSL_PORT="${OPSWATCH_KAFKA_SASL_SSL_PORT:-}"
SSL_PORT="${OPSWATCH_KAFKA_SSL_PORT:-}"
SCRAM_USERS="${OPSWATCH_KAFKA_SCRAM_USERS:-opswatch:opswatch-local-secret}"
TLS="$CACHE/tls"
LOG_FILE="$CACHE/kafka.log"

BROKER_JVM_OPTS=(
  -Xms256m -Xmx1g
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError
  -XX:ParallelGCThreads=2 -XX:ConcGCThreads=1
  # C1 only: ~2 s faster start-up on 2 cores; plenty for test traffic.
  # (Undo with OPSWATCH_KAFKA_JVM_OPTS=-XX:TieredStopAtLevel=4 -- the last flag wins.)
  -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$LOG4J_CONF"
)
# shellcheck disable=SC2206  # deliberate word splitting of a user-supplied option string
BROKER_JVM_OPTS+=(${OPSWATCH_KAFKA_JVM_OPTS:-})
# CLI tools: small, fast-starting JVMs; their logging goes to stderr at WARN.
TOOL_JVM_OPTS=(
  -Xms32m -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
  "-Dlog4j2.configurationFile=$LOG4J_CONF" -Dkafka.log.level=WARN -Dkafka.log.target=SYSTEM_ERR
)

say() { echo "kafka.sh: $*"; }
warn() { echo "kafka.sh: $*" >&2; }
die() { echo "kafka.sh: ERROR: $*" >&2; exit 1; }

usage() {
  echo "usage: $(basename "$0") up|down|status" >&2
  exit 2
}

# Wall clock in milliseconds (bash 5 EPOCHREALTIME; whole seconds elsewhere).
now_ms() {
  if [[ -n "${EPOCHREALTIME:-}" ]]; then
    local t="${EPOCHREALTIME/[.,]/}"
    echo $((10#$t / 1000))
  else
    echo $(($(date +%s) * 1000))
  fi
}
fmt_secs() { printf '%d.%01ds' $(($1 / 1000)) $((($1 % 1000) / 100)); }

require_java() {
  command -v java >/dev/null 2>&1 || die "java not found on PATH (Java 17+ is needed)"
}

# --- process helpers -------------------------------------------------------------

read_pid() {
  local pid=""
  if [[ -f "$PID_FILE" ]]; then pid="$(tr -dc '0-9' <"$PID_FILE" || true)"; fi
  echo "$pid"
}

# True if $1 is a live (non-zombie) process that is our Kafka broker.
is_broker_pid() {
  local pid="$1"
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/status" ]]; then
    # (no `cmd | grep -q` here: with pipefail an early grep exit can fail the pipeline)
    [[ "$(sed -n 's/^State:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null)" != Z* ]] || return 1
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *kafka.Kafka* ]] || return 1
  else
    [[ "$(ps -p "$pid" -o args= 2>/dev/null)" == *kafka.Kafka* ]] || return 1
  fi
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

run_bounded() { # run_bounded SECONDS cmd... (uses coreutils timeout when present)
  local secs="$1"
  shift
  if command -v timeout >/dev/null 2>&1; then
    timeout --kill-after=5 "$secs" "$@"
  else
    "$@"
  fi
}

# A command array, not a function: it has to work under `timeout` too.
TOOL=(java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*")

log_tail() {
  if [[ -f "$LOG_FILE" ]]; then
    echo "----- last 40 lines of $LOG_FILE -----" >&2
    tail -n 40 "$LOG_FILE" >&2 || true
    echo "--------------------------------------" >&2
  fi
}

kafka_version() {
  local jar
  for jar in "$LIBS"/kafka_2.13-*.jar; do
    [[ -f "$jar" ]] || continue
    jar="${jar##*/kafka_2.13-}"
    echo "${jar%.jar}"
    return
  done
  echo "?"
}

# --- one-time setup ------------------------------------------------------------------

resolve_libs() {
  local want
  want="$(cksum <"$POM" | awk '{print $1 "-" $2}')"
  if [[ -f "$LIBS_MARKER" && "$(cat "$LIBS_MARKER")" == "$want" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH (needed once, to resolve the Kafka jars)"
  say "resolving Kafka jars from Maven Central into $LIBS (one-time) ..."
  local tmp="$CACHE/kafka-libs.tmp.$$"
  rm -rf "$tmp"
  # Output goes to a file (mvn -q still emits ANSI resets) and is shown only on failure.
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" \
    >"$CACHE/mvn.log" 2>&1; then
    cat "$CACHE/mvn.log" >&2
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed (output above, also in $CACHE/mvn.log)"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "no kafka_2.13 jar was resolved"; }
  echo "$want" >"$tmp/.resolved"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
}

write_props() {
  local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://$HOST:$PORT"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [[ -n "$SASL_SSL_PORT" ]]; then
    listeners+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
    advertised+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  if [[ -n "$SSL_PORT" ]]; then
    listeners+=",SSL://$HOST:$SSL_PORT"
    advertised+=",SSL://$HOST:$SSL_PORT"
    protocols+=",SSL:SSL"
  fi
  cat >"$PROPS" <<EOF
# Generated by deploy/local/kafka.sh on every 'up' -- edits are overwritten.
# Single-node KRaft: this process is both broker and (the only) controller.
process.roles=broker,controller
node.id=1
listeners=$listeners
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT

log.dirs=$DATA

# Topics: auto-created with 4 partitions; everything replicated once.
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Small machine (2 cores): fewer threads, smaller buffers and segments.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.segment.bytes=67108864
log.retention.hours=24
log.retention.check.interval.ms=300000
EOF
  if [[ -n "$SASL_SSL_PORT" ]]; then
    cat >>"$PROPS" <<EOF

# SASL_SSL: SCRAM-SHA-512 over TLS; the users are created when the storage is formatted.
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS/server-keystore.pem
listener.name.sasl_ssl.ssl.client.auth=none
EOF
  fi
  if [[ -n "$SSL_PORT" ]]; then
    cat >>"$PROPS" <<EOF

# SSL with mutual TLS: a client certificate signed by the CA is required.
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$TLS/server-keystore.pem
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$TLS/ca.pem
listener.name.ssl.ssl.client.auth=required
EOF
  fi
}

# A CA, and a server and a client certificate signed by it, made anew on every `up`
# (the CA's certificate, for clients, in $TLS/ca.pem).
make_tls() {
  command -v openssl >/dev/null 2>&1 || die "openssl not found on PATH (needed for the SASL_SSL listener)"
  rm -rf "$TLS"
  mkdir -p "$TLS"
  (
    cd "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=opswatch local CA" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
    printf 'subjectAltName=IP:%s,DNS:localhost\n' "$HOST" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile server.ext -out server.pem
    # Kafka's PEM key store: an unencrypted PKCS#8 key, then the certificate chain
    openssl pkcs8 -topk8 -nocrypt -in server.key -out server-keystore.pem
    cat server.pem ca.pem >>server-keystore.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=opswatch" -keyout client.key -out client.csr
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -out client.pem
  ) >"$CACHE/tls.log" 2>&1 || { cat "$CACHE/tls.log" >&2; die "making the TLS certificates failed"; }
}

scram_args() { # --add-scram per user of $SCRAM_USERS, one argument a line
  local user
  for user in $SCRAM_USERS; do
    [[ "$user" == *:* ]] || die "OPSWATCH_KAFKA_SCRAM_USERS: '$user' is not name:password"
    printf -- '--add-scram\nSCRAM-SHA-512=[name=%s,password=%s]\n' "${user%%:*}" "${user#*:}"
  done
}

ensure_cluster_id() {
  if [[ -s "$CLUSTER_ID_FILE" ]]; then
    return 0
  fi
  local id=""
  if [[ -f "$DATA/meta.properties" ]]; then
    # keep the id the data dir was already formatted with
    id="$(sed -n 's/^cluster\.id=//p' "$DATA/meta.properties" | head -n 1)"
  fi
  if [[ -z "$id" ]]; then
    id="$("${TOOL[@]}" kafka.tools.StorageTool random-uuid | tail -n 1)"
  fi
  [[ "$id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "could not generate a cluster id (got '$id')"
  echo "$id" >"$CLUSTER_ID_FILE"
}

format_storage() {
  local id stamp
  id="$(cat "$CLUSTER_ID_FILE")"
  stamp="cluster.id=$id controller=$HOST:$CONTROLLER_PORT node.id=1"
  if [[ -n "$SASL_SSL_PORT" ]]; then
    stamp+=" scram=$(echo "$SCRAM_USERS" | cksum | awk '{print $1}')"
  fi
  if [[ -f "$DATA/meta.properties" ]]; then
    if [[ -f "$FORMAT_STAMP" && "$(cat "$FORMAT_STAMP")" != "$stamp" ]]; then
      # The standalone KRaft quorum records the controller endpoint at format time.
      warn "data dir was formatted for '$(cat "$FORMAT_STAMP")'; now '$stamp': wiping $DATA"
      rm -rf "$DATA"
    else
      return 0
    fi
  fi
  mkdir -p "$DATA"
  say "formatting KRaft storage in $DATA (cluster id $id) ..."
  local scram=()
  if [[ -n "$SASL_SSL_PORT" ]]; then mapfile -t scram < <(scram_args); fi
  "${TOOL[@]}" kafka.tools.StorageTool format --standalone -t "$id" -c "$PROPS" "${scram[@]}" \
    >/dev/null || die "kafka.tools.StorageTool format failed"
  echo "$stamp" >"$FORMAT_STAMP"
}

# --- health check: produce a token, read it back -----------------------------------

PY_ROUNDTRIP='
import sys, uuid
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
bootstrap, topic = sys.argv[1], sys.argv[2]
token = uuid.uuid4().hex.encode()
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5,
                         request_timeout_ms=5000, max_block_ms=10000)
try:
    md = producer.send(topic, value=token).get(timeout=15)
finally:
    producer.close(timeout=5)
consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=topic,
                         enable_auto_commit=False, consumer_timeout_ms=10000)
try:
    tp = TopicPartition(topic, md.partition)
    consumer.assign([tp])  # manual assignment: no group join needed
    consumer.seek(tp, md.offset)
    ok = any(msg.value == token for msg in consumer)
    if ok:
        # Best effort: an offset commit makes the broker create __consumer_offsets now,
        # so the first real consumer group (aiokafka/faust) does not start with
        # GroupCoordinatorNotAvailableError retries.
        try:
            consumer.commit()
        except Exception:
            pass
finally:
    consumer.close()
sys.exit(0 if ok else 1)
'

python_has_kafka() {
  command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -c 'import kafka; kafka.KafkaProducer' >/dev/null 2>&1
}

roundtrip_python() {
  run_bounded 40 "$PYTHON" -c "$PY_ROUNDTRIP" "$BOOTSTRAP" "$HEALTH_TOPIC" \
    >/dev/null 2>"$CACHE/healthcheck.err"
}

end_offset_java() { # prints the end offset of partition 0 of the health topic
  run_bounded 30 "${TOOL[@]}" org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$BOOTSTRAP" \
    --topic "$HEALTH_TOPIC_1P" --partitions 0 --time -1 2>/dev/null |
    awk -F: '$2 == "0" { print $3 }'
}

roundtrip_java() {
  local end token got
  end="$(end_offset_java)" || end=""
  if ! [[ "$end" =~ ^[0-9]+$ ]]; then
    # First run: create the topic with one partition, so the partition/offset of the
    # token is known without a client library.
    run_bounded 30 "${TOOL[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
      --create --if-not-exists --topic "$HEALTH_TOPIC_1P" --partitions 1 --replication-factor 1 \
      >/dev/null 2>&1 || return 1
    end="$(end_offset_java)" || return 1
    [[ "$end" =~ ^[0-9]+$ ]] || return 1
  fi
  token="health-$(date +%s)-$$-$RANDOM"
  echo "$token" | run_bounded 30 "${TOOL[@]}" org.apache.kafka.tools.ConsoleProducer \
    --bootstrap-server "$BOOTSTRAP" --topic "$HEALTH_TOPIC_1P" --producer-property acks=all --sync \
    >/dev/null 2>&1 || return 1
  got="$(run_bounded 30 "${TOOL[@]}" org.apache.kafka.tools.consumer.ConsoleConsumer \
    --bootstrap-server "$BOOTSTRAP" --topic "$HEALTH_TOPIC_1P" --partition 0 --offset "$end" \
    --max-messages 1 --timeout-ms 10000 2>/dev/null)" || return 1
  [[ "$got" == "$token" ]] || return 1
  if ! compgen -G "$DATA/__consumer_offsets-*" >/dev/null; then
    # Best effort, once per data dir: a FindCoordinator makes the broker create
    # __consumer_offsets now, so the first real consumer group does not start with
    # GroupCoordinatorNotAvailableError retries (the Python check does this by committing).
    run_bounded 20 "${TOOL[@]}" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
      --bootstrap-server "$BOOTSTRAP" --describe --group "$HEALTH_TOPIC" >/dev/null 2>&1 || true
  fi
}

# --- commands ------------------------------------------------------------------------

cmd_up() {
  local t0 t_launch pid method
  t0="$(now_ms)"
  mkdir -p "$CACHE"

  pid="$(read_pid)"
  if is_broker_pid "$pid"; then
    if port_open "$PORT"; then
      say "already running (pid $pid, $BOOTSTRAP)"
      return 0
    fi
    say "broker process $pid is alive but $BOOTSTRAP is not answering yet; waiting for it"
  else
    if [[ -f "$PID_FILE" ]]; then
      warn "removing stale pid file (pid ${pid:-?} is not running)"
      rm -f "$PID_FILE"
    fi
    pid=""
    local p
    for p in "$PORT" "$CONTROLLER_PORT" $SASL_SSL_PORT $SSL_PORT; do
      if port_open "$p"; then
        die "port $HOST:$p is already in use by another process (not started by this script)"
      fi
    done
  fi

  require_java
  [[ -f "$POM" ]] || die "missing $POM"
  [[ -f "$LOG4J_CONF" ]] || die "missing $LOG4J_CONF"
  resolve_libs

  if [[ -z "$pid" ]]; then
    write_props
    if [[ -n "$SASL_SSL_PORT$SSL_PORT" ]]; then make_tls; fi
    ensure_cluster_id
    format_storage

    if [[ -f "$LOG_FILE" ]]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; fi
    local launcher=(nohup)
    command -v setsid >/dev/null 2>&1 && launcher=(setsid nohup)
    say "starting Kafka $(kafka_version) on $BOOTSTRAP (controller $HOST:$CONTROLLER_PORT), log: $LOG_FILE"
    t_launch="$(now_ms)"
    # The inner shell writes its own pid and then execs java, so the pid file holds the
    # java pid whether or not setsid had to fork. fd 9 (the lock) must not leak into it.
    # shellcheck disable=SC2016
    "${launcher[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-launch "$PID_FILE" \
      java "${BROKER_JVM_OPTS[@]}" -cp "$LIBS/*" kafka.Kafka "$PROPS" \
      </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    local i
    for i in $(seq 1 50); do
      pid="$(read_pid)"
      [[ -n "$pid" ]] && break
      sleep 0.1
    done
    [[ -n "$pid" ]] || die "broker launcher did not write $PID_FILE"
  else
    t_launch="$t0"
  fi

  if python_has_kafka; then method=python; else method=java; fi
  say "waiting up to ${START_TIMEOUT}s for a produce/consume round trip (via $method) ..."
  local deadline=$((t_launch + START_TIMEOUT * 1000)) py_fails=0
  while :; do
    if ! is_broker_pid "$pid"; then
      rm -f "$PID_FILE"
      log_tail
      die "the broker (pid $pid) exited during startup"
    fi
    if port_open "$PORT"; then
      if "roundtrip_$method"; then
        break
      fi
      if [[ "$method" == python ]] && ((++py_fails >= 5)); then
        warn "the kafka-python round trip keeps failing; last error:"
        tail -n 3 "$CACHE/healthcheck.err" >&2 || true
        warn "falling back to the Java console tools"
        method=java
      fi
    fi
    if (($(now_ms) >= deadline)); then
      log_tail
      warn "stopping the unhealthy broker (pid $pid)"
      stop_pid "$pid" || true
      rm -f "$PID_FILE"
      die "Kafka did not become healthy on $BOOTSTRAP within ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done

  local t1
  t1="$(now_ms)"
  if [[ -n "$SASL_SSL_PORT" ]]; then
    say "SASL_SSL (SCRAM-SHA-512) on $HOST:$SASL_SSL_PORT, CA certificate $TLS/ca.pem"
  fi
  if [[ -n "$SSL_PORT" ]]; then
    say "SSL with client certificates on $HOST:$SSL_PORT, a client's in $TLS/client.pem"
  fi
  say "Kafka $(kafka_version) is up on $BOOTSTRAP (pid $pid): broker healthy $(fmt_secs $((t1 - t_launch))) after launch, $(fmt_secs $((t1 - t0))) in total"
}

# SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL. Only ever signals the given pid.
stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    is_broker_pid "$pid" || return 0
    sleep 0.1
  done
  warn "pid $pid still alive after ${STOP_TIMEOUT}s: sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    is_broker_pid "$pid" || return 0
    sleep 0.1
  done
  return 1
}

cmd_down() {
  local pid t0
  pid="$(read_pid)"
  if ! is_broker_pid "$pid"; then
    rm -f "$PID_FILE"
    say "not running"
    return 0
  fi
  t0="$(now_ms)"
  say "stopping Kafka (pid $pid) ..."
  stop_pid "$pid" || die "could not stop pid $pid"
  rm -f "$PID_FILE"
  say "stopped in $(fmt_secs $(($(now_ms) - t0)))"
}

cmd_status() {
  local pid
  pid="$(read_pid)"
  if is_broker_pid "$pid"; then
    if port_open "$PORT"; then
      echo "running (pid $pid, $BOOTSTRAP)"
      return 0
    fi
    echo "unhealthy (pid $pid alive, $BOOTSTRAP not answering)"
    return 4
  fi
  echo "stopped"
  return 3
}

[[ $# -eq 1 ]] || usage
case "$1" in
  up | down)
    mkdir -p "$CACHE"
    if command -v flock >/dev/null 2>&1; then
      # Serialise concurrent up/down on the same cache (e.g. parallel test runs).
      exec 9>"$CACHE/kafka.lock"
      flock -w 180 9 || die "could not lock $CACHE/kafka.lock within 180s"
    fi
    ;;
esac
case "$1" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) usage ;;
esac
