#!/usr/bin/env bash
# Fetches Apache Kafka (broker, tools, an SLF4J binding: tests/kafka/pom.xml)
# from Maven Central into Maven's local repository and copies each version's
# runtime classpath into build-kafka/, for the tests and the bench:
#   libs/        Kafka 4.3.0, every real-broker test
#   libs-3.9.1/  Kafka 3.9.1, SASL/SCRAM (Debian 12's librdkafka 2.0.2 fails
#                SCRAM against 4.x brokers; see docs/runbook.md)
#   debezium/debezium-postgres/  Debezium's PostgreSQL connector, a Kafka
#                Connect plugin folder (tests/debezium/pom.xml), the peer of
#                test_debezium and the bench
# Once the jars are in ~/.m2 it works offline; a folder whose pom has not
# changed is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
pom=tests/kafka/pom.xml
plugin=org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies
for entry in 4.3.0:libs 3.9.1:libs-3.9.1; do
  version=${entry%%:*}
  libs=$PWD/build-kafka/${entry#*:}
  stamp=$libs/.pom.sha256
  want="$(sha256sum "$pom" | cut -d' ' -f1) $version"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "kafka-jars: Kafka $version present ($(ls "$libs"/*.jar | wc -l) jars)"
    continue
  fi
  rm -rf "$libs"
  args=(-B -q -f "$pom" "$plugin" -Dkafka.version="$version" -DincludeScope=runtime
        -DoutputDirectory="$libs")
  # offline first: machines that fetched before have everything in ~/.m2
  mvn -o "${args[@]}" >/dev/null 2>&1 || mvn "${args[@]}"
  echo "$want" > "$stamp"
  echo "kafka-jars: Kafka $version in $libs ($(ls "$libs"/*.jar | wc -l) jars)"
done

# Debezium: Connect and SLF4J come from Kafka's own jars above
pom=tests/debezium/pom.xml
libs=$PWD/build-kafka/debezium/debezium-postgres
stamp=$libs/.pom.sha256
want="$(sha256sum "$pom" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "kafka-jars: Debezium present ($(ls "$libs"/*.jar | wc -l) jars)"
else
  rm -rf "$libs"
  args=(-B -q -f "$pom" "$plugin" -DincludeScope=runtime
        -DexcludeGroupIds=org.apache.kafka,org.slf4j -DoutputDirectory="$libs")
  mvn -o "${args[@]}" >/dev/null 2>&1 || mvn "${args[@]}"
  echo "$want" > "$stamp"
  echo "kafka-jars: Debezium in $libs ($(ls "$libs"/*.jar | wc -l) jars)"
fi
