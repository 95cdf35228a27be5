#!/bin/sh
# Write the broker's configuration (user and password from a secret file), then run RabbitMQ.
set -eu
if [ "$(id -u)" = 0 ]; then
  mkdir -p /var/lib/rabbitmq /run/rabbitmq
  chown rabbitmq:rabbitmq /var/lib/rabbitmq /run/rabbitmq
  if [ -n "${RABBITMQ_DEFAULT_PASS_FILE:-}" ]; then
    # Root reads the secret (group 10001, mode 0640); the broker's user gets a copy.
    install -o rabbitmq -g rabbitmq -m 0400 "$RABBITMQ_DEFAULT_PASS_FILE" /run/rabbitmq/password
    RABBITMQ_DEFAULT_PASS_FILE=/run/rabbitmq/password
    export RABBITMQ_DEFAULT_PASS_FILE
  fi
  exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$0" "$@"
fi

conf=/run/rabbitmq/rabbitmq.conf
user=${RABBITMQ_DEFAULT_USER:-ihgamp}
if [ -n "${RABBITMQ_DEFAULT_PASS_FILE:-}" ]; then
  password=$(cat "$RABBITMQ_DEFAULT_PASS_FILE")
elif [ -n "${RABBITMQ_DEFAULT_PASS:-}" ]; then
  password=$RABBITMQ_DEFAULT_PASS
else
  echo "rabbitmq-entrypoint: set RABBITMQ_DEFAULT_PASS_FILE (or RABBITMQ_DEFAULT_PASS)" >&2
  exit 1
fi
umask 077
# The default user is created when the data folder is new; later starts keep the database's.
{
  echo "listeners.tcp.default = 5672"
  echo "default_user = $user"
  echo "default_pass = $password"
  echo "default_vhost = /"
  echo "loopback_users = none"
  echo "log.console = true"
  echo "log.console.level = warning"
} >"$conf"
echo "[]." >/run/rabbitmq/enabled_plugins
unset password RABBITMQ_DEFAULT_PASS
if [ "${1:-}" = rabbitmq-server ]; then
  shift
  exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
