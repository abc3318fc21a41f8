#!/usr/bin/env bash
# Fetches Apache Kafka (broker, tools, an SLF4J binding: tests/kafka/pom.xml)
# from Maven Central into Maven's local repository and copies the runtime
# classpath to build-kafka/libs, for the tests and the bench.  Once the jars
# are in ~/.m2 it works offline; a second run with the classpath in place
# does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
libs=$PWD/build-kafka/libs
stamp=$libs/.pom.sha256
want=$(sha256sum tests/kafka/pom.xml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "kafka-jars: $(ls "$libs"/*.jar | wc -l) jars present"
  exit 0
fi
rm -rf "$libs"
plugin=org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies
args=(-B -q -f tests/kafka/pom.xml "$plugin" -DincludeScope=runtime -DoutputDirectory="$libs")
# offline first: CI machines that ran before, and sessions, have ~/.m2
mvn -o "${args[@]}" >/dev/null 2>&1 || mvn "${args[@]}"
echo "$want" > "$stamp"
echo "kafka-jars: $(ls "$libs"/*.jar | wc -l) jars in $libs"
