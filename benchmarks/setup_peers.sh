#!/usr/bin/env bash
# Install the peer libraries compared in benchmarks/peers_fvc.py into the project's .venv.
#
# Peers are an optional extra, never a dependency of biomatch. Idempotent: re-running it
# skips what is already installed at the pinned version.
#
#   nbis-py 0.1.3  NIST mindtct + bozorth3 (manylinux_2_34 wheel). NOT `nbis-python`: its wheel
#                  needs glibc 2.38 and both install a top-level `nbis` package.
#   afis 1.2.7     source package; its native NBIS library (libafis_lfs.so, needed by the
#                  LEADER+bozorth3 path) is built with `make install` in its native/ folder, which
#                  copies the library into afis/_native/ so that `pip install` ships it as package
#                  data. benchmarks/_peers.py also points AFIS_LFS_LIB at it.
#                  Pulls onnxruntime (LEADER network), scipy, scikit-image.
#
# Usage: benchmarks/setup_peers.sh [PYTHON]     (default: <repo>/.venv/bin/python)
# Needs: network access to PyPI, a C compiler and make.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$REPO/.venv/bin/python}"
NBIS_VERSION=0.1.3
AFIS_VERSION=1.2.7
WORK="${BIOMATCH_BENCH_CACHE:-$HOME/.cache/biomatch-bench}/peers-src"

if [ ! -x "$PY" ]; then
    echo "setup_peers: no Python at $PY (create the .venv first)" >&2
    exit 1
fi
if "$PY" -m pip show nbis-python >/dev/null 2>&1; then
    echo "setup_peers: nbis-python is installed and clashes with nbis-py (both provide 'nbis');" >&2
    echo "             remove it first: $PY -m pip uninstall nbis-python" >&2
    exit 1
fi

installed() {  # installed NAME VERSION -> 0 when that exact version is installed
    [ "$("$PY" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p')" = "$2" ]
}

if installed nbis-py "$NBIS_VERSION"; then
    echo "setup_peers: nbis-py $NBIS_VERSION already installed"
else
    "$PY" -m pip install "nbis-py==$NBIS_VERSION"
fi

AFIS_LIB_OK=0
if installed afis "$AFIS_VERSION"; then
    if "$PY" - <<'PYEOF'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("afis")
lib = pathlib.Path(spec.origin).parent / "_native" / "libafis_lfs.so"
sys.exit(0 if lib.is_file() else 1)
PYEOF
    then AFIS_LIB_OK=1; fi
fi
if [ "$AFIS_LIB_OK" = 1 ]; then
    echo "setup_peers: afis $AFIS_VERSION (with libafis_lfs.so) already installed"
else
    mkdir -p "$WORK"
    SRC="$WORK/afis-$AFIS_VERSION"
    if [ ! -d "$SRC" ]; then
        "$PY" -m pip download --no-deps --no-binary :all: "afis==$AFIS_VERSION" -d "$WORK"
        tar -xzf "$WORK/afis-$AFIS_VERSION.tar.gz" -C "$WORK"
    fi
    make -C "$SRC/native" install          # builds native/lib/libafis_lfs.so, copies into afis/_native/
    # A local source tree is always (re)built and installed by pip, with afis's own
    # dependencies (onnxruntime, scipy, scikit-image) resolved against the existing .venv.
    "$PY" -m pip install "$SRC"
fi

"$PY" - <<'PYEOF'
import nbis, afis
print("setup_peers: nbis-py OK; afis", afis.__version__, "native NBIS:", afis.available_native())
PYEOF
