#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, combined broker + controller) on 127.0.0.1, from the
# broker jars on Maven Central. Used by the tests (tests/fixtures/kafka.py) and by users who
# want a local broker without Docker.
#
#   scripts/kafka.sh fetch                       download the jars once into .kafka/libs-<ver>
#   scripts/kafka.sh up --dir DIR [--port 9092] [--controller-port 9093]
#                                                format DIR (first time only), start, wait until
#                                                a client gets metadata; prints pid and dir
#   scripts/kafka.sh down --dir DIR [--kill]     stop it (SIGTERM, or SIGKILL = a crash) and wait
#
# Environment: KAFKA_VERSION (default 4.1.1; 3.9.x selects the 3.9 logging profile),
# KAFKA_HEAP (default 512m), KAFKA_READY_TIMEOUT_S (default 90).
# Needs Java 17+ and Maven; `fetch` also installs kcat (Debian) when run as root without it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
case "$KAFKA_VERSION" in
  3.*) PROFILE='!kafka4,kafka39' ;;
  *) PROFILE=kafka4 ;;
esac
LIBS="$ROOT/.kafka/libs-$KAFKA_VERSION"
HEAP=${KAFKA_HEAP:-512m}
READY_TIMEOUT_S=${KAFKA_READY_TIMEOUT_S:-90}

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  mkdir -p "$ROOT/.kafka"
  # Test runs that start at once must not delete and fetch the jars under each other.
  exec 8>"$ROOT/.kafka/fetch.lock"
  flock 8
  if [ ! -f "$LIBS/.complete" ]; then
    command -v mvn >/dev/null || die "Maven (mvn) is not installed; it fetches the broker jars"
    command -v java >/dev/null || die "Java 17+ is not installed; the broker needs it"
    rm -rf "$LIBS"
    mkdir -p "$LIBS"
    echo "kafka.sh: fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS" >&2
    mvn -q -B -f "$ROOT/ci/kafka/pom.xml" -P"$PROFILE" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$LIBS" -DincludeScope=runtime \
      || die "mvn could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see output above)"
    ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $LIBS after mvn"
    touch "$LIBS/.complete"
  fi
  exec 8>&-  # unlock now: a broker started after this must not inherit the lock
  # kcat: a Kafka consumer we did not write, for tests/test_kcat_schema.py.
  if ! command -v kcat >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      # Not fatal: without kcat only tests/test_kcat_schema.py fails, and says why.
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null; } \
        || echo "kafka.sh: could not install kcat with apt-get" >&2
    else
      echo "kafka.sh: kcat not found; install it (apt-get install kcat) to run tests/test_kcat_schema.py" >&2
    fi
  fi
}

parse_args() {
  DIR="" PORT=9092 CPORT=9093 KILL=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      --port) PORT=$2; shift 2 ;;
      --controller-port) CPORT=$2; shift 2 ;;
      --kill) KILL=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  [ -n "$DIR" ] || die "--dir is required"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
}

# Exit 0 when the broker at 127.0.0.1:$1 answers a Metadata request listing at least one broker:
# the check a client makes, with nothing but python3's standard library.
metadata_ok() {
  python3 - "$1" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.settimeout(2)
    client = b"kafka.sh"
    # Metadata v0 request, empty topic list; v0 is supported by 3.9 and 4.x brokers.
    body = struct.pack(">hhih", 3, 0, 1, len(client)) + client + struct.pack(">i", 0)
    s.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
    data = s.recv(size, socket.MSG_WAITALL)
    corr, nbrokers = struct.unpack(">ii", data[:8])
    sys.exit(0 if corr == 1 and nbrokers >= 1 else 1)
except (OSError, struct.error):
    sys.exit(1)
PY
}

# True while the pid file names this directory's broker. The command line is checked, not just
# the pid: after a crash the pid may belong to another process, which must never be signalled.
pid_alive() {
  [ -f "$DIR/kafka.pid" ] || return 1
  tr '\0' ' ' 2>/dev/null < "/proc/$(cat "$DIR/kafka.pid")/cmdline" \
    | grep -qF "kafka.Kafka $DIR/server.properties"
}

up() {
  parse_args "$@"
  [ -f "$LIBS/.complete" ] || fetch
  pid_alive && die "a broker from $DIR is already running (pid $(cat "$DIR/kafka.pid"))"
  mkdir -p "$DIR/data" "$DIR/logs"
  sed -e "s#@DATA_DIR@#$DIR/data#" -e "s#@PORT@#$PORT#g" -e "s#@CONTROLLER_PORT@#$CPORT#g" \
    "$ROOT/ci/kafka/server.properties" > "$DIR/server.properties"
  local logopts=(-Dlog4j2.configurationFile="$ROOT/ci/kafka/log4j2.properties"
                 -Dlog4j.configuration="file:$ROOT/ci/kafka/log4j.properties"
                 -Dkafka.logs.dir="$DIR/logs")
  if [ ! -f "$DIR/data/meta.properties" ]; then
    # Any string is a valid cluster id to the broker; this is Kafka's own format (base64 UUID).
    local cluster_id
    cluster_id=$(python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"): print(s); break')
    java -Xmx256m "${logopts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$DIR/server.properties" > "$DIR/logs/format.log" 2>&1 \
      || { cat "$DIR/logs/format.log" >&2; die "formatting KRaft storage in $DIR/data failed"; }
  fi
  : > "$DIR/logs/server.out"
  # setsid: the broker outlives this script and is not hit by signals sent to the caller's group.
  setsid java -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    "${logopts[@]}" -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" \
    > "$DIR/logs/server.out" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$DIR/kafka.pid"
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  while [ $SECONDS -lt $deadline ]; do
    # The child we just started is ours: check only that it lives. Its command line is not
    # `java ... kafka.Kafka` until exec completes, so pid_alive() can fail in the first moments.
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 60 "$DIR/logs/server.out" >&2
      die "broker exited during startup (log: $DIR/logs/server.out)"
    fi
    if grep -q "Kafka Server started" "$DIR/logs/server.out" && metadata_ok "$PORT"; then
      echo "kafka $KAFKA_VERSION ready on 127.0.0.1:$PORT (pid $(cat "$DIR/kafka.pid"), dir $DIR)"
      return 0
    fi
    sleep 0.3
  done
  tail -n 60 "$DIR/logs/server.out" >&2
  kill -9 "$(cat "$DIR/kafka.pid")" 2>/dev/null || true
  die "broker not ready after ${READY_TIMEOUT_S}s (log: $DIR/logs/server.out)"
}

down() {
  parse_args "$@"
  pid_alive || { rm -f "$DIR/kafka.pid"; return 0; }
  local pid
  pid=$(cat "$DIR/kafka.pid")
  if [ "$KILL" = 1 ]; then kill -9 "$pid"; else kill -TERM "$pid"; fi
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$DIR/kafka.pid"; return 0; }
    sleep 0.2
  done
  echo "kafka.sh: broker pid $pid did not stop in 30s; killing it" >&2
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$DIR/kafka.pid"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  fetch) fetch ;;
  up) up "$@" ;;
  down) down "$@" ;;
  *) die "usage: scripts/kafka.sh fetch | up --dir DIR [--port P] [--controller-port C] | down --dir DIR [--kill]" ;;
esac
