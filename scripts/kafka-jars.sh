#!/usr/bin/env bash
# Fetches Apache Kafka (broker, tools, an SLF4J binding: tests/kafka/pom.xml)
# and Debezium's PostgreSQL connector (tests/debezium/pom.xml) from Maven
# Central into Maven's local repository and copies each runtime classpath
# into build-kafka/, for the tests and the bench:
#   libs/        Kafka 4.3.0, every real-broker test
#   libs-3.9.1/  Kafka 3.9.1, SASL/SCRAM (Debian 12's librdkafka 2.0.2 fails
#                SCRAM against 4.x brokers; see docs/runbook.md)
#   debezium/debezium-postgres/  Debezium's PostgreSQL connector, a Kafka
#                Connect plugin folder (Connect and SLF4J come from libs/),
#                the peer of test_debezium and the bench
# Once the jars are in ~/.m2 it works offline; a folder whose pom has not
# changed is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
plugin=org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies

# fetch NAME POM DIR [MAVEN ARGS...]: DIR gets POM's runtime classpath
fetch() {
  local name=$1 pom=$2 libs=$PWD/build-kafka/$3
  shift 3
  local stamp=$libs/.pom.sha256
  local want
  want="$(sha256sum "$pom" | cut -d' ' -f1) $*"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "kafka-jars: $name present ($(ls "$libs"/*.jar | wc -l) jars)"
    return
  fi
  rm -rf "$libs"
  local args=(-B -q -f "$pom" "$plugin" -DincludeScope=runtime -DoutputDirectory="$libs" "$@")
  # offline first: machines that fetched before have everything in ~/.m2
  mvn -o "${args[@]}" >/dev/null 2>&1 || mvn "${args[@]}"
  echo "$want" > "$stamp"
  echo "kafka-jars: $name in $libs ($(ls "$libs"/*.jar | wc -l) jars)"
}

fetch "Kafka 4.3.0" tests/kafka/pom.xml libs -Dkafka.version=4.3.0
fetch "Kafka 3.9.1" tests/kafka/pom.xml libs-3.9.1 -Dkafka.version=3.9.1
fetch "Debezium" tests/debezium/pom.xml debezium/debezium-postgres \
  -DexcludeGroupIds=org.apache.kafka,org.slf4j
