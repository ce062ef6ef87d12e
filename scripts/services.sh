#!/usr/bin/env bash
# Installs (if missing) and runs the servers the service and its tests need,
# on loopback: a Kafka-protocol broker (tansu), a MongoDB-protocol server
# (polodb) and PostgreSQL (Debian's package, the multi-replica store); and
# installs headless Chromium for the web console's browser tests.
# Versions are pinned; cargo caches the binaries in ~/.cargo/bin.
#
#   scripts/services.sh up       install if needed, start, wait until they answer
#   scripts/services.sh down     stop them
#   scripts/services.sh status   show what runs
#
# Settings (environment): SERVICES_DIR (state and logs, default .services),
# KAFKA_PORT (9092), MONGO_PORT (27017); PostgreSQL listens on its cluster's
# port (5432) with user postgres, password postgres;
# KAFKA_STORAGE (default memory://tansu/; sqlite://DIR/tansu.db survives restarts).
set -euo pipefail

TANSU_VERSION=0.6.0
POLODB_VERSION=5.3.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES_DIR=${SERVICES_DIR:-$ROOT/.services}
KAFKA_PORT=${KAFKA_PORT:-9092}
MONGO_PORT=${MONGO_PORT:-27017}
KAFKA_STORAGE=${KAFKA_STORAGE:-memory://tansu/}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin

log() { printf 'services: %s\n' "$*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

cargo_install() { # name version [features]
  local name=$1 version=$2 features=${3:-}
  if [ -x "$CARGO_BIN/$name" ] && "$CARGO_BIN/$name" --version 2>/dev/null | grep -q "$version"; then
    return 0
  fi
  log "building $name $version from crates.io (about 15 minutes, once)"
  if [ -n "$features" ]; then
    cargo install --locked "$name" --version "$version" --features "$features" >&2 \
      || cargo install "$name" --version "$version" --features "$features" >&2
  else
    cargo install --locked "$name" --version "$version" >&2 || cargo install "$name" --version "$version" >&2
  fi
}

install() {
  # libssl-dev: the OpenSSL that librdkafka links for TLS and SASL SCRAM
  # (in Debian's Rust images already; listed so that a bare machine builds).
  # python3-venv: the virtual environment scripts/schemathesis.sh makes.
  # chromium, chromium-driver: the browser tests of the web console
  # (tests/console.rs drives headless Chromium over WebDriver).
  apt_install libclang-dev libssl-dev docker-compose postgresql python3-venv chromium chromium-driver
  cargo_install tansu "$TANSU_VERSION" dynostore,libsql
  cargo_install polodb "$POLODB_VERSION"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port pidfile
  local name=$1 port=$2 pidfile=$3
  for _ in $(seq 1 300); do
    if port_open "$port"; then log "$name answers on 127.0.0.1:$port"; return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "$name exited; its log:"; tail -n 30 "$SERVICES_DIR/$name.log" >&2; return 1
    fi
    sleep 0.2
  done
  log "$name did not answer on port $port within 60 s"; return 1
}

start() { # name port command...
  local name=$1 port=$2; shift 2
  local pidfile=$SERVICES_DIR/$name.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "$name already running (pid $(cat "$pidfile"))"; return 0
  fi
  if port_open "$port"; then
    log "port $port is taken by another process; not starting $name"; return 1
  fi
  (cd "$SERVICES_DIR" && exec setsid "$@" >"$SERVICES_DIR/$name.log" 2>&1) &
  echo $! >"$pidfile"
  wait_port "$name" "$port" "$pidfile"
}

stop() { # name
  local pidfile=$SERVICES_DIR/$1.pid
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped $1"
  fi
  rm -f "$pidfile"
}

up() {
  install
  mkdir -p "$SERVICES_DIR/polodb"
  start kafka "$KAFKA_PORT" "$CARGO_BIN/tansu" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "$KAFKA_STORAGE"
  start mongodb "$MONGO_PORT" "$CARGO_BIN/polodb" serve \
    --host 127.0.0.1 --port "$MONGO_PORT" --path "$SERVICES_DIR/polodb"
  postgres_up
}

pg_version() { ls /usr/lib/postgresql | sort -V | tail -n 1; }

postgres_up() {
  local version; version=$(pg_version)
  pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main" || pg_createcluster "$version" main >&2
  pg_lsclusters -h | awk '$1=="'"$version"'" && $2=="main" {print $4}' | grep -qx online \
    || pg_ctlcluster "$version" main start
  for _ in $(seq 1 100); do port_open 5432 && break; sleep 0.2; done
  port_open 5432 || { log "PostgreSQL did not start"; return 1; }
  # Tests and local runs connect over TCP with a password.
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  log "postgresql answers on 127.0.0.1:5432"
}

postgres_down() {
  local version; version=$(pg_version)
  [ -n "$version" ] && pg_ctlcluster "$version" main stop 2>/dev/null && log "stopped postgresql" || true
}

down() {
  stop kafka
  stop mongodb
  postgres_down
}

status() {
  for name in kafka mongodb; do
    local pidfile=$SERVICES_DIR/$name.pid
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$pidfile"))"
    else
      echo "$name: stopped"
    fi
  done
  pg_lsclusters 2>/dev/null | sed 1d | sed 's/^/postgresql: /'
}

mkdir -p "$SERVICES_DIR"
case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  install) install ;;
  *) echo "usage: $0 up|down|status|install" >&2; exit 2 ;;
esac
