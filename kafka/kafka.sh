#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, no Docker) for samestream.
#
#   bash kafka/kafka.sh install   copy the broker jars from Maven Central (kafka/pom.xml) if missing/stale
#   bash kafka/kafka.sh up        install if needed, render config, format once, start, wait until ready
#   bash kafka/kafka.sh down      SIGTERM, wait for a controlled shutdown, SIGKILL as a last resort
#   bash kafka/kafka.sh status    running or not (exit 0 when running, 3 when stopped)
#   bash kafka/kafka.sh reset     down + delete the data directory (topics, offsets, cluster id)
#   bash kafka/kafka.sh version   Kafka version of the installed jars
#
# Settings (environment):
#   SAMESTREAM_KAFKA_PORT             client listener port on 127.0.0.1       (default 9092)
#   SAMESTREAM_KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1      (default 9093)
#   SAMESTREAM_KAFKA_HOME             jars, config, data, logs, pid file      (default <repo>/.kafka)
#   SAMESTREAM_KAFKA_START_TIMEOUT    seconds `up` waits for readiness        (default 90)
#
# Clients connect to 127.0.0.1:$SAMESTREAM_KAFKA_PORT.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"

port="${SAMESTREAM_KAFKA_PORT:-9092}"
controller_port="${SAMESTREAM_KAFKA_CONTROLLER_PORT:-9093}"
home="${SAMESTREAM_KAFKA_HOME:-$repo_root/.kafka}"
start_timeout="${SAMESTREAM_KAFKA_START_TIMEOUT:-90}"
stop_timeout=30

pom="$script_dir/pom.xml"
server_template="$script_dir/server.properties.template"
log4j_template="$script_dir/log4j2.properties.template"

java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
heap_opts=(-Xms256m -Xmx768m)

say() { printf 'kafka: %s\n' "$*"; }
die() { printf 'kafka: ERROR: %s\n' "$*" >&2; exit 1; }

for p in "$port" "$controller_port"; do
  if ! [[ "$p" =~ ^[0-9]+$ ]] || (( p < 1 || p > 65535 )); then die "invalid port '$p'"; fi
done
[[ "$port" != "$controller_port" ]] || die "SAMESTREAM_KAFKA_PORT and SAMESTREAM_KAFKA_CONTROLLER_PORT must differ"
[[ "$start_timeout" =~ ^[0-9]+$ ]] || die "SAMESTREAM_KAFKA_START_TIMEOUT must be a number of seconds"

mkdir -p "$home"
home="$(cd "$home" && pwd)"
libs="$home/libs"
data_dir="$home/data"
logs_dir="$home/logs"
pid_file="$home/kafka.pid"
server_props="$home/server.properties"
log4j_props="$home/log4j2.properties"
libs_stamp="$libs/.installed"
bootstrap="127.0.0.1:$port"

# ----------------------------------------------------------------------------------------------
# helpers

# One kafka.sh at a time per home (the broker itself does not inherit fd 9, see start_broker).
take_lock() {
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$home/.lock"
    flock -w 180 9 || die "another kafka.sh is busy with $home (lock $home/.lock)"
  fi
}

require_java() {
  command -v "$java_bin" >/dev/null 2>&1 || die "java not found (Kafka 4.x needs Java 17 or newer)"
  local v major
  v="$("$java_bin" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  major="${v%%.*}"
  if ! [[ "$major" =~ ^[0-9]+$ ]] || (( major < 17 )); then
    die "Java 17 or newer is required by Kafka 4.x, found '${v:-unknown}' ($java_bin)"
  fi
}

process_alive() {  # pid -> 0 while any thread of the process still runs (zombies count as gone)
  local pid="$1" task line
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  for task in /proc/"$pid"/task/*/stat; do
    read -r line 2>/dev/null <"$task" || continue
    line="${line##*) }"
    case "${line%% *}" in
      Z | X | x) ;;
      *) return 0 ;;
    esac
  done
  return 1
}

is_our_broker() {  # pid -> 0 if it is the broker started with this home's server.properties
  local pid="$1" cmdline
  process_alive "$pid" || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *kafka.Kafka* && "$cmdline" == *"$server_props"* ]]
}

running_pid() {  # prints the broker pid and returns 0 if it runs; removes a stale pid file
  local pid
  [[ -f "$pid_file" ]] || return 1
  pid="$(tr -dc '0-9' <"$pid_file" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && is_our_broker "$pid"; then
    printf '%s\n' "$pid"
    return 0
  fi
  rm -f "$pid_file"
  return 1
}

port_in_use() {  # port -> 0 if something accepts connections on 127.0.0.1:port
  # shellcheck disable=SC2016  # $1 belongs to the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

describe_listener() {  # port -> who listens there, if the tools to find out exist
  local p="$1"
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$p" 2>/dev/null | sed 's/^/    /'
  elif command -v lsof >/dev/null 2>&1; then
    lsof -nP -iTCP:"$p" -sTCP:LISTEN 2>/dev/null | sed 's/^/    /'
  fi
}

check_ports_free() {
  local p name
  for p in "$port" "$controller_port"; do
    if [[ "$p" == "$port" ]]; then name=SAMESTREAM_KAFKA_PORT; else name=SAMESTREAM_KAFKA_CONTROLLER_PORT; fi
    if port_in_use "$p"; then
      {
        printf 'kafka: ERROR: port %s on 127.0.0.1 is already in use by another process ' "$p"
        printf '(not the broker of %s).\n' "$home"
        describe_listener "$p"
        printf 'kafka: stop that process, or choose another port with %s=<port>.\n' "$name"
      } >&2
      exit 1
    fi
  done
}

show_log_tail() {  # [offset of server.log where this start began]
  local offset="${1:-0}" size
  echo "----- tail of $logs_dir/server.log -----" >&2
  if [[ -f "$logs_dir/server.log" ]]; then
    size="$(stat -c %s "$logs_dir/server.log")"
    (( size >= offset )) || offset=0
    tail -c +"$((offset + 1))" "$logs_dir/server.log" | tail -n 60 >&2
  fi
  echo "----- tail of $logs_dir/kafka.out (JVM stdout/stderr) -----" >&2
  if [[ -f "$logs_dir/kafka.out" ]]; then
    tail -n 30 "$logs_dir/kafka.out" >&2
  fi
  echo "-----" >&2
}

running_bootstrap() {  # client address of the running broker, read from its rendered config
  local listeners
  listeners="$(sed -n 's/^listeners=//p' "$server_props" 2>/dev/null | head -n 1)"
  if [[ "$listeners" =~ PLAINTEXT://([^,]+) ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
  else
    printf '%s\n' "$bootstrap"
  fi
}

# Java classpath wildcard (expanded by java, not by the shell).
classpath() { printf '%s/*' "$libs"; }

kafka_version() {
  local jar jars
  jars=("$libs"/kafka_2.13-*.jar)
  jar="${jars[-1]}"
  [[ -f "$jar" ]] || return 1
  jar="$(basename "$jar" .jar)"
  printf '%s\n' "${jar#kafka_2.13-}"
}

# ----------------------------------------------------------------------------------------------
# install

pom_hash() { sha256sum "$pom" | awk '{print $1}'; }

libs_complete() {
  [[ -f "$libs_stamp" ]] || return 1
  [[ "$(head -n 1 "$libs_stamp")" == "pom-sha256 $(pom_hash)" ]] || return 1
  local jar count=0
  while IFS= read -r jar; do
    [[ -s "$libs/$jar" ]] || return 1
    count=$((count + 1))
  done < <(tail -n +2 "$libs_stamp")
  (( count > 0 ))
}

do_install() {
  local pid
  if libs_complete; then
    say "jars up to date: $(($(wc -l <"$libs_stamp") - 1)) jars in $libs (Kafka $(kafka_version))"
    return 0
  fi
  if pid="$(running_pid)"; then
    die "the jars in $libs are missing or stale, but the broker runs (pid $pid): run 'kafka.sh down' first"
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn (Maven) not found: it copies the broker jars from Maven Central"
  require_java
  say "copying broker jars from Maven Central (kafka/pom.xml) into $libs ..."
  local tmp="$home/libs.tmp.$$" mvn_log="$logs_dir/install.log"
  rm -rf "$tmp"
  mkdir -p "$logs_dir"
  if ! mvn -B -q -Dstyle.color=never -f "$pom" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    rm -rf "$tmp"
    tail -n 40 "$mvn_log" >&2
    die "mvn copy-dependencies failed (network to Maven Central? log: $mvn_log)"
  fi
  local required
  for required in 'kafka_2.13-*.jar' 'kafka-clients-*.jar' 'kafka-server-*.jar' 'kafka-tools-[0-9]*.jar' \
      'log4j-core-*.jar' 'log4j-slf4j-impl-*.jar'; do
    compgen -G "$tmp/$required" >/dev/null || { rm -rf "$tmp"; die "copied jars lack $required"; }
  done
  {
    printf 'pom-sha256 %s\n' "$(pom_hash)"
    (cd "$tmp" && ls -1 -- *.jar)
  } >"$tmp/.installed"
  rm -rf "$libs"
  mv "$tmp" "$libs"
  say "installed $(($(wc -l <"$libs_stamp") - 1)) jars ($(du -sh "$libs" | awk '{print $1}')), Kafka $(kafka_version)"
}

# ----------------------------------------------------------------------------------------------
# up

render() {  # template destination key=value...
  local template="$1" dest="$2" text pair key value
  shift 2
  text="$(<"$template")"
  for pair in "$@"; do
    key="${pair%%=*}"
    value="${pair#*=}"
    text="${text//"@$key@"/"$value"}"
  done
  if [[ "$text" =~ @[A-Z_]+@ ]]; then
    die "unreplaced placeholder ${BASH_REMATCH[0]} in $template"
  fi
  printf '%s\n' "$text" >"$dest.tmp"
  mv "$dest.tmp" "$dest"
}

write_config() {
  mkdir -p "$data_dir" "$logs_dir"
  render "$server_template" "$server_props" \
    "PORT=$port" "CONTROLLER_PORT=$controller_port" "DATA_DIR=$data_dir"
  render "$log4j_template" "$log4j_props" "LOG_DIR=$logs_dir"
}

format_storage_once() {
  if [[ -f "$data_dir/meta.properties" ]]; then
    return 0
  fi
  local cluster_id
  cluster_id="$("$java_bin" -cp "$(classpath)" kafka.tools.StorageTool random-uuid 2>>"$logs_dir/format.log" | tail -n 1)"
  [[ -n "$cluster_id" ]] || { cat "$logs_dir/format.log" >&2; die "could not generate a cluster id"; }
  say "formatting $data_dir (KRaft, standalone controller, cluster id $cluster_id)"
  if ! "$java_bin" -cp "$(classpath)" kafka.tools.StorageTool format --standalone --cluster-id "$cluster_id" --config "$server_props" \
      >>"$logs_dir/format.log" 2>&1; then
    tail -n 30 "$logs_dir/format.log" >&2
    die "formatting the storage in $data_dir failed (log: $logs_dir/format.log; 'kafka.sh reset' starts over)"
  fi
}

start_broker() {
  if [[ -f "$logs_dir/kafka.out" ]]; then
    mv -f "$logs_dir/kafka.out" "$logs_dir/kafka.out.prev"
  fi
  rm -f "$pid_file"
  # The broker gets its own session (setsid) so it outlives this shell and its process group.
  # The inner bash closes every inherited descriptor above 2 (the kafka.sh lock on fd 9, pipes of
  # whoever called kafka.sh), writes its own pid and then execs java: the pid file holds the JVM's pid.
  # shellcheck disable=SC2016
  setsid bash -c '
    fds=(/proc/$$/fd/*)
    for fd in "${fds[@]}"; do n="${fd##*/}"; if (( n > 2 )); then exec {n}>&-; fi; done
    echo $$ >"$0"
    exec "$@"' "$pid_file" \
    "$java_bin" "${heap_opts[@]}" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent "-XX:ErrorFile=$logs_dir/hs_err_pid%p.log" \
    "-Xlog:gc:file=$logs_dir/gc.log:time,uptime:filecount=3,filesize=10m" \
    -Djava.awt.headless=true \
    "-Dkafka.logs.dir=$logs_dir" "-Dlog4j2.configurationFile=$log4j_props" \
    -cp "$(classpath)" kafka.Kafka "$server_props" \
    </dev/null >"$logs_dir/kafka.out" 2>&1 &
  local _
  for _ in $(seq 1 100); do
    [[ -s "$pid_file" ]] && break
    sleep 0.05
  done
  [[ -s "$pid_file" ]] || die "the broker process did not start (see $logs_dir/kafka.out)"
}

admin_answers() {  # 0 if the broker's admin API lists topics (the broker's own TopicCommand)
  timeout 30 "$java_bin" -Xmx128m -XX:TieredStopAtLevel=1 \
    -cp "$(classpath)" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$bootstrap" --list >"$logs_dir/readiness.out" 2>&1
}

wait_ready() {  # log offset where this start began
  # Readiness is the client port answering and then the admin API listing topics. Not a log line:
  # a broker loading many topics writes enough to roll server.log while it starts.
  local offset="$1" pid t0=$SECONDS
  pid="$(tr -dc '0-9' <"$pid_file")"
  while (( SECONDS - t0 < start_timeout )); do
    if ! process_alive "$pid"; then
      rm -f "$pid_file"
      show_log_tail "$offset"
      die "the broker exited during startup (logs: $logs_dir)"
    fi
    if port_in_use "$port" && admin_answers; then
      return 0
    fi
    sleep 0.5
  done
  show_log_tail "$offset"
  if [[ -f "$logs_dir/readiness.out" ]]; then
    echo "----- last readiness check (TopicCommand --list) -----" >&2
    tail -n 20 "$logs_dir/readiness.out" >&2
  fi
  say "stopping the broker that did not become ready ..." >&2
  stop_broker "$pid" >&2 || true
  die "the broker did not become ready on $bootstrap within ${start_timeout}s (logs: $logs_dir)"
}

do_up() {
  local pid offset t0=$SECONDS
  if pid="$(running_pid)"; then
    local actual
    actual="$(running_bootstrap)"
    if [[ "$actual" != "$bootstrap" ]]; then
      die "already running (pid $pid) on $actual, not on the requested $bootstrap: run 'kafka.sh down' first"
    fi
    say "already running (pid $pid) on $bootstrap"
    return 0
  fi
  require_java
  [[ -f "$server_template" && -f "$log4j_template" ]] || die "templates missing in $script_dir"
  check_ports_free
  do_install
  write_config
  format_storage_once
  offset=0
  [[ -f "$logs_dir/server.log" ]] && offset="$(stat -c %s "$logs_dir/server.log")"
  say "starting Kafka $(kafka_version) on $bootstrap (controller 127.0.0.1:$controller_port, data $data_dir)"
  start_broker
  wait_ready "$offset"
  say "ready on $bootstrap (pid $(<"$pid_file"), $((SECONDS - t0))s; logs in $logs_dir)"
}

# ----------------------------------------------------------------------------------------------
# down / status / reset

stop_broker() {  # pid
  local pid="$1" t0=$SECONDS
  kill -TERM "$pid" 2>/dev/null || true
  while process_alive "$pid"; do
    if (( SECONDS - t0 >= stop_timeout )); then
      say "no exit after ${stop_timeout}s of SIGTERM, sending SIGKILL to pid $pid" >&2
      kill -KILL "$pid" 2>/dev/null || true
      local _
      for _ in $(seq 1 50); do process_alive "$pid" || break; sleep 0.1; done
      break
    fi
    sleep 0.2
  done
  rm -f "$pid_file"
  process_alive "$pid" && die "pid $pid is still alive after SIGKILL"
  say "stopped (pid $pid, $((SECONDS - t0))s)"
}

do_down() {
  local pid
  if ! pid="$(running_pid)"; then
    say "not running"
    return 0
  fi
  say "stopping pid $pid (controlled shutdown) ..."
  stop_broker "$pid"
}

do_status() {
  local pid
  if pid="$(running_pid)"; then
    local actual state="not accepting connections yet"
    actual="$(running_bootstrap)"
    if port_in_use "${actual##*:}"; then
      state="accepting connections"
    fi
    say "running (pid $pid) on $actual, $state; home $home"
    return 0
  fi
  local formatted="not formatted"
  [[ -f "$data_dir/meta.properties" ]] && formatted="formatted data in $data_dir"
  say "stopped ($formatted)"
  return 3
}

do_reset() {
  do_down
  if [[ -d "$data_dir" ]]; then
    rm -rf "$data_dir"
    say "deleted $data_dir"
  else
    say "no data dir to delete"
  fi
}

do_version() {
  local v
  v="$(kafka_version)" || die "jars not installed in $libs (run 'kafka.sh install')"
  say "Kafka $v (kafka_2.13-$v.jar in $libs)"
}

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

cmd="${1:-}"
case "$cmd" in
  install) take_lock; do_install ;;
  up) take_lock; do_up ;;
  down) take_lock; do_down ;;
  status) do_status ;;
  reset) take_lock; do_reset ;;
  version) do_version ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
