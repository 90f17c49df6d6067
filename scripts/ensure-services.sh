#!/usr/bin/env bash
# Start the local Redis and PostgreSQL the tests use, if they are not already running, and install the
# headless browser the web-page tests drive (Debian's chromium) and the Fashion-MNIST data set
# (Debian's dataset-fashion-mnist, via ensure-datasets.sh), if they are missing.
set -u
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package) for the browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium \
    || echo "warning: could not install chromium; the browser tests will fail"
fi
bash "$(dirname "$0")/ensure-datasets.sh"
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  echo "starting postgresql on 127.0.0.1:5432"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && break; sleep 0.1; done
fi
redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || echo "warning: redis is not reachable; tests that need it will fail"
pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 || echo "warning: postgresql is not reachable; tests that need it will fail"
exit 0
