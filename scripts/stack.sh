#!/usr/bin/env bash
# The local stack for development, tests and benchmarks, run as plain processes:
# Apache Kafka (KRaft, single node, from Maven Central), Redis (Debian's redis-server), and
# kcat (Debian) as an independent Kafka client.
#
#   scripts/stack.sh up       install what is missing, start Kafka and Redis, create the topics
#   scripts/stack.sh redis    install what is missing, start Redis alone
#   scripts/stack.sh cluster  install what is missing, start a 3-node Redis Cluster (no replicas)
#                             on REDIS_CLUSTER_PORTS, form it once, wait for cluster_state:ok
#   scripts/stack.sh down     stop everything this script started (data is kept under .cache/stack)
#   scripts/stack.sh reset    stop everything and delete its data
#   scripts/stack.sh status   say what runs
#   scripts/stack.sh install  only install (apt packages, Kafka jars)
#
# Settings (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_SASL_PORT (9094),
# REDIS_PORT (6379), REDIS_CLUSTER_PORTS ("7001 7002 7003"; each node also uses its port + 10000
# for the cluster bus), PAYMENTS_PARTITIONS (6), FD_CACHE (<repo>/.cache). Downloads are cached
# under FD_CACHE.
#
# The Redis Cluster is for the tests of the service on a cluster (e2e/cluster_test.go): each node
# keeps its nodes.conf under .cache/stack/redis-cluster/<port>, so a cluster stopped with down
# comes back formed (and empty: like the single Redis, it keeps no data on disk).
#
# Kafka listens twice: PLAINTEXT on KAFKA_PORT (also between brokers) and SASL_PLAINTEXT on
# KAFKA_SASL_PORT, with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, for the tests of the client's
# authentication (e2e/sasl_test.go, docs/security.md). Its one user, fraud-e2e, has a fixed
# password written below: it is for tests on this machine only, never for a broker anyone else
# can reach.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FD_CACHE:-$root/.cache}
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$root/scripts/kafka/pom.xml")
kafka_home=$cache/kafka-$kafka_version
state=$cache/stack
kafka_port=${KAFKA_PORT:-9092}
controller_port=${KAFKA_CONTROLLER_PORT:-9093}
sasl_port=${KAFKA_SASL_PORT:-9094}
redis_port=${REDIS_PORT:-6379}
read -r -a cluster_ports <<<"${REDIS_CLUSTER_PORTS:-7001 7002 7003}"
payments_partitions=${PAYMENTS_PARTITIONS:-6}
bootstrap=127.0.0.1:$kafka_port
sasl_bootstrap=127.0.0.1:$sasl_port
# TEST-ONLY credentials of the SASL listener (PLAIN and SCRAM); e2e/sasl_test.go has the same.
sasl_user=fraud-e2e
sasl_password=fraud-e2e-test-only-Zq7w

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_apt() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v kcat >/dev/null || missing+=(kcat)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v chromium >/dev/null || missing+=(chromium) # the console's browser tests (chromedp)
  [ ${#missing[@]} -eq 0 ] && return
  command -v apt-get >/dev/null || die "need ${missing[*]}: install them with your package manager"
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  log "installing ${missing[*]} from Debian"
  $sudo apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_kafka() {
  [ -f "$kafka_home/.complete" ] && return
  command -v mvn >/dev/null || die "need Maven (mvn) to fetch Kafka $kafka_version from Maven Central"
  command -v java >/dev/null || die "need Java 17 to run Kafka"
  log "fetching Kafka $kafka_version and its dependencies from Maven Central"
  rm -rf "$kafka_home"
  mkdir -p "$kafka_home/libs"
  mvn -q -B -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$kafka_home/libs" >&2
  touch "$kafka_home/.complete"
}

kafka_java() { # main-class args...
  [ -f "$state/kafka/log4j.properties" ] || write_log4j_config # a broker this script reused
  java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$state/kafka/log4j.properties" \
    -cp "$kafka_home/libs/*" "$@"
}

write_kafka_config() {
  mkdir -p "$state/kafka/data"
  cat >"$state/kafka/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port,SASL_PLAINTEXT://127.0.0.1:$sasl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port,SASL_PLAINTEXT://127.0.0.1:$sasl_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user="$sasl_password";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$state/kafka/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=2097152
PROPS
  write_log4j_config
}

write_log4j_config() {
  mkdir -p "$state/kafka"
  cat >"$state/kafka/log4j.properties" <<PROPS
log4j.rootLogger=WARN, file
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$state/kafka/server.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS
}

running() { # pidfile
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_kafka() {
  if running "$state/kafka.pid"; then log "kafka already runs (pid $(cat "$state/kafka.pid"))"; return; fi
  if kcat -b "$bootstrap" -L -m 2 >/dev/null 2>&1; then
    log "a broker already answers on $bootstrap (not started by this checkout); using it"
    return
  fi
  write_kafka_config
  if [ ! -f "$state/kafka/data/meta.properties" ]; then
    # A fixed cluster id: 16 bytes, base64url, as Kafka's StorageTool expects.
    kafka_java kafka.tools.StorageTool format --ignore-formatted \
      -t ZnJhdWQtZGV0ZWN0b3IAAA -c "$state/kafka/server.properties" >/dev/null
  fi
  log "starting kafka $kafka_version on $bootstrap"
  nohup java -Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$state/kafka/log4j.properties" \
    -cp "$kafka_home/libs/*" kafka.Kafka "$state/kafka/server.properties" \
    >"$state/kafka/stdout.log" 2>&1 </dev/null &
  echo $! >"$state/kafka.pid"
  local deadline=$((SECONDS + 90))
  until kcat -b "$bootstrap" -L -m 2 >/dev/null 2>&1; do
    running "$state/kafka.pid" || die "kafka exited; see $state/kafka/server.log and $state/kafka/stdout.log"
    [ $SECONDS -lt $deadline ] || die "kafka did not answer on $bootstrap within 90 s; see $state/kafka/server.log"
    sleep 0.5
  done
}

start_redis() {
  if running "$state/redis.pid"; then log "redis already runs (pid $(cat "$state/redis.pid"))"; return; fi
  if redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; then
    log "a redis already answers on port $redis_port (not started by this checkout); using it"
    return
  fi
  mkdir -p "$state/redis"
  log "starting redis on 127.0.0.1:$redis_port"
  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
    --pidfile "$state/redis.pid" --logfile "$state/redis/redis.log" --dir "$state/redis" \
    --save "" --appendonly no --hash-max-listpack-value 512 >/dev/null
  local deadline=$((SECONDS + 20))
  until redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; do
    [ $SECONDS -lt $deadline ] || die "redis did not answer on port $redis_port; see $state/redis/redis.log"
    sleep 0.2
  done
}

# cluster_info prints field (e.g. cluster_state) of CLUSTER INFO of the node on port, or nothing.
cluster_info() { # port field
  redis-cli -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# start_cluster starts a redis-server with cluster-enabled on each of cluster_ports, forms the
# cluster when none of them belongs to one yet (a re-run finds it formed and leaves it), and waits
# until every node says cluster_state:ok.
start_cluster() {
  local port dir n=${#cluster_ports[@]}
  [ "$n" -ge 3 ] || die "REDIS_CLUSTER_PORTS: a Redis Cluster needs at least 3 masters, got '${cluster_ports[*]}'"
  for port in "${cluster_ports[@]}"; do
    dir=$state/redis-cluster/$port
    if running "$dir/redis.pid"; then log "redis cluster node $port already runs (pid $(cat "$dir/redis.pid"))"; continue; fi
    if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
      [ "$(redis-cli -p "$port" info cluster 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_enabled://p')" = 1 ] ||
        die "a redis without cluster mode answers on port $port (not started by this checkout); stop it or set REDIS_CLUSTER_PORTS"
      log "a cluster-enabled redis already answers on port $port (not started by this checkout); using it"
      continue
    fi
    mkdir -p "$dir"
    log "starting redis cluster node on 127.0.0.1:$port"
    redis-server --bind 127.0.0.1 --port "$port" --daemonize yes \
      --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
      --save "" --appendonly no --hash-max-listpack-value 512 >/dev/null
  done
  local deadline=$((SECONDS + 20))
  for port in "${cluster_ports[@]}"; do
    until redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; do
      [ $SECONDS -lt $deadline ] || die "redis cluster node did not answer on port $port; see $state/redis-cluster/$port/redis.log"
      sleep 0.2
    done
  done

  # Formed: every node knows all n and sees every slot assigned. Unformed: every node alone, with
  # no slot. Anything else is a cluster this script cannot safely form or repair.
  local formed=0 alone=0 known slots
  for port in "${cluster_ports[@]}"; do
    known=$(cluster_info "$port" cluster_known_nodes) slots=$(cluster_info "$port" cluster_slots_assigned)
    if [ "$known" = "$n" ] && [ "$slots" = 16384 ]; then
      formed=$((formed + 1))
    elif [ "$known" = 1 ] && [ "$slots" = 0 ]; then
      alone=$((alone + 1))
    fi
  done
  if [ "$alone" -eq "$n" ]; then
    local addrs=()
    for port in "${cluster_ports[@]}"; do addrs+=("127.0.0.1:$port"); done
    log "forming the redis cluster of ${addrs[*]}"
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$state/redis-cluster/create.log" 2>&1 ||
      die "redis-cli --cluster create failed; see $state/redis-cluster/create.log"
  elif [ "$formed" -ne "$n" ]; then
    die "the redis nodes on ports ${cluster_ports[*]} are neither one formed cluster nor all unformed (see redis-cli -p ${cluster_ports[0]} cluster nodes); start them afresh: scripts/stack.sh down, remove $state/redis-cluster, scripts/stack.sh cluster"
  fi
  deadline=$((SECONDS + 30))
  for port in "${cluster_ports[@]}"; do
    until [ "$(cluster_info "$port" cluster_state)" = ok ]; do
      [ $SECONDS -lt $deadline ] || die "redis cluster node $port is not cluster_state:ok after 30 s; see redis-cli -p $port cluster info"
      sleep 0.2
    done
  done
}

stop_cluster() {
  local pidfile port
  for pidfile in "$state"/redis-cluster/*/redis.pid; do
    [ -e "$pidfile" ] || continue
    port=$(basename "$(dirname "$pidfile")")
    stop_pid "redis cluster node $port" "$pidfile"
  done
}

create_topics() {
  local existing
  existing=$(kcat -b "$bootstrap" -L 2>/dev/null | sed -n 's/^  topic "\([^"]*\)".*/\1/p')
  local spec name parts
  for spec in "payments:$payments_partitions" "high-risk-payments:3" "payments-dlq:1" "fraud-labels:1"; do
    name=${spec%%:*} parts=${spec##*:}
    grep -qx "$name" <<<"$existing" && continue
    log "creating topic $name ($parts partitions)"
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
      --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 >/dev/null
  done
}

# create_scram_user gives the test user its SCRAM credentials (kept in the cluster metadata;
# altering them again is harmless), then checks the SASL listener, which a broker started before
# it was added, or not by this script, may lack.
create_scram_user() {
  local mech
  # One mechanism per call: a KRaft broker refuses to alter a user's credentials twice in one
  # request (DuplicateResourceException).
  for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "$bootstrap" --alter \
      --add-config "$mech=[password=$sasl_password]" --entity-type users --entity-name "$sasl_user" >/dev/null
  done
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$sasl_port") 2>/dev/null; then
    log "warning: nothing listens on $sasl_bootstrap: the broker on $bootstrap was started without the SASL"
    log "warning: listener (by stack.sh before it had one, or not by this checkout), and the SASL tests will"
    log "warning: fail until it is restarted: scripts/stack.sh down && scripts/stack.sh up"
    return
  fi
  local deadline=$((SECONDS + 20))
  until kcat -b "$sasl_bootstrap" -X security.protocol=SASL_PLAINTEXT -X sasl.mechanisms=SCRAM-SHA-512 \
      -X sasl.username="$sasl_user" -X sasl.password="$sasl_password" -L -m 2 >/dev/null 2>&1; do
    # The new credentials reach the listener through the metadata log, within moments.
    if [ $SECONDS -ge $deadline ]; then
      log "warning: the SASL listener on $sasl_bootstrap refuses user $sasl_user (see $state/kafka/server.log);"
      log "warning: the SASL tests will fail"
      return
    fi
    sleep 0.5
  done
}

stop_pid() { # name pidfile
  local pid
  running "$2" || { rm -f "$2"; return; }
  pid=$(cat "$2")
  log "stopping $1 (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && { log "$1 did not stop in 30 s; killing it"; kill -9 "$pid"; }
  rm -f "$2"
}

cmd=${1:-}
case "$cmd" in
  install) install_apt; install_kafka ;;
  up)
    install_apt; install_kafka
    mkdir -p "$state"
    start_redis
    start_kafka
    create_topics
    create_scram_user
    log "ready: kafka $bootstrap (SASL: $sasl_bootstrap), redis 127.0.0.1:$redis_port"
    ;;
  redis) # Redis alone (training and benchmarks keep the replay's card state in it)
    install_apt
    mkdir -p "$state"
    start_redis
    ;;
  cluster) # a Redis Cluster beside the single Redis (e2e/cluster_test.go)
    install_apt
    mkdir -p "$state/redis-cluster"
    start_cluster
    log "ready: redis cluster $(printf '127.0.0.1:%s ' "${cluster_ports[@]}")(cluster_state:ok)"
    ;;
  down) stop_pid kafka "$state/kafka.pid"; stop_pid redis "$state/redis.pid"; stop_cluster ;;
  reset) "$0" down; rm -rf "$state" ;;
  status)
    running "$state/kafka.pid" && echo "kafka: running (pid $(cat "$state/kafka.pid")) on $bootstrap" || echo "kafka: stopped"
    running "$state/redis.pid" && echo "redis: running (pid $(cat "$state/redis.pid")) on 127.0.0.1:$redis_port" || echo "redis: stopped"
    for port in "${cluster_ports[@]}"; do
      if running "$state/redis-cluster/$port/redis.pid"; then
        echo "redis cluster node: running (pid $(cat "$state/redis-cluster/$port/redis.pid")) on 127.0.0.1:$port, cluster_state:$(cluster_info "$port" cluster_state)"
      else
        echo "redis cluster node: stopped (127.0.0.1:$port)"
      fi
    done
    ;;
  *) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
