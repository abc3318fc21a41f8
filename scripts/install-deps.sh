#!/usr/bin/env bash
# Installs what outboxd needs to build, test and run its demo, from Debian 12
# packages (uses sudo when not run as root), then Apache Kafka's jars from
# Maven Central for the real-broker tests (scripts/kafka-jars.sh).
set -euo pipefail

packages=(
  gcc pkg-config meson ninja-build clang libclang-rt-14-dev clang-format valgrind
  libpq-dev librdkafka-dev libavro-dev libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev check
  postgresql-15 postgresql-15-wal2json
  python3 python3-kafka python3-avro python3-lz4 python3-snappy python3-zstandard python3-pip
  kcat yamllint python3-yaml openssl time
  openjdk-17-jre-headless maven locales
)

as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# a server speaking German, for the tests that outboxd reads PostgreSQL's
# errors by SQLSTATE only (postgresql-15 ships the translations)
if ! locale -a 2>/dev/null | grep -qix 'de_DE\.utf-\?8'; then
  "${as_root[@]}" localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi
"$(dirname "$0")/kafka-jars.sh"
# a registry-aware Avro deserializer that is not ours, for the schema
# registry tests: confluent_kafka from PyPI, in a folder of its own
python_packages="$(dirname "$0")/../build-kafka/python"
confluent="confluent-kafka[avro,schemaregistry]==2.16.1"
if [ ! -f "$python_packages/.installed" ] || [ "$(cat "$python_packages/.installed")" != "$confluent" ]; then
  rm -rf "$python_packages"
  PIP_ROOT_USER_ACTION=ignore /usr/bin/python3 -m pip install --quiet --disable-pip-version-check \
    --no-warn-script-location \
    --target "$python_packages" "$confluent"
  echo "$confluent" > "$python_packages/.installed"
fi
