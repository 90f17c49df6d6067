#!/usr/bin/env bash
# Install the data sets the built-ins read from Debian packages, where missing: Fashion-MNIST's IDX files
# (package dataset-fashion-mnist, /usr/share/datasets/fashion-mnist/) for {"builtin": "fashion-mnist"}.
# Without it that built-in fails with an error naming the package; everything else works.
set -u
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "installing dataset-fashion-mnist (Debian package) for the fashion-mnist built-in"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q dataset-fashion-mnist \
    || echo "warning: could not install dataset-fashion-mnist; the fashion-mnist built-in will be unavailable"
fi
exit 0
