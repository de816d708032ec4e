# Sourced by .ci/run: installs Debian's PostgreSQL and runs a throwaway cluster on 127.0.0.1.
PG_PORT="${PG_PORT:-54329}"
PG_DIR="${PG_DIR:-/tmp/zebra-ci-pg}"

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && echo "$d"
}

pg_start() {
  if [ -z "$(pg_bin)" ]; then
    echo "ci: installing PostgreSQL (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql >/dev/null
  fi
  local bin
  bin=$(pg_bin)
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  chown postgres "$PG_DIR"
  # initdb refuses to run as root, so the cluster belongs to the postgres user.
  runuser -u postgres -- "$bin/initdb" -D "$PG_DIR/data" -U zebra --auth=trust >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" \
    -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DIR" -w start >/dev/null
  runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U zebra zebra_test
  export ZEBRA_TEST_PG_URL="postgresql+psycopg://zebra@127.0.0.1:$PG_PORT/zebra_test"
  echo "ci: PostgreSQL ready at 127.0.0.1:$PG_PORT"
}

pg_stop() {
  local bin
  bin=$(pg_bin)
  [ -n "$bin" ] && [ -d "$PG_DIR/data" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
}
