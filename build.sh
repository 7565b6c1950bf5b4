#!/usr/bin/env bash
# k-textures for QGIS: one-command set-up, demo, tests and packaging on Debian 12 (bookworm).
#   ./build.sh demo [OUTDIR]   install what is missing, then segment the bundled sample with qgis_process
#   ./build.sh test [PYTEST_ARGS...]   install what is missing (training too), then run all tests
#                              (quick subset without qgis_process and real fits: ./build.sh test -m "not slow")
#   ./build.sh lint [RUFF_ARGS...]     ruff check . (settings in pyproject.toml; installs only ruff)
#   ./build.sh setup           install only
#   ./build.sh package         write dist/ktextures.zip (the installable plugin)
#   ./build.sh screenshots     the README's screenshots from a QGIS desktop window under Xvfb
#   ./build.sh walkthrough     a new user's day in a QGIS window under Xvfb (fresh profile, no venv): the zip,
#                              both installs from the notices, fit, batch, sample, novelty, a model; screenshots
# The recipe and its traps: docs/development.md (Debian's /usr/bin/python3 only, numpy pinned
# to Debian's, qgis_process.bin, QT_QPA_PLATFORM=offscreen).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
BUILD="$ROOT/.build"
PLUGIN_ID=ktextures
export QT_QPA_PLATFORM=offscreen
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$BUILD"
export XDG_RUNTIME_DIR="$BUILD/xdg-runtime"; mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"

APT_PACKAGES="qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-numpy python3-scipy \
python3-venv python3-pip pyqt5-dev-tools zip"

log() { printf '[build.sh] %s\n' "$*" >&2; }

setup_system() {
    local missing=()
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        log "installing Debian packages: ${missing[*]}"
        $SUDO apt-get update -q
        $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $APT_PACKAGES
    fi
}

# $1: requirements file. Re-installs only when the requirement files change (stamp = their hash).
setup_venv() {
    local req=$1 stamp="$VENV/.stamp-$(basename "$1")"
    local want; want=$(cat constraints.txt "$req" requirements.txt | sha256sum | cut -c1-16)
    if [ ! -x "$PY" ]; then
        log "creating $VENV from Debian's /usr/bin/python3 (the only Python that imports qgis)"
        /usr/bin/python3 -m venv --system-site-packages "$VENV"
        local site; site=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
        echo /usr/share/qgis/python/plugins > "$site/qgis_python_plugins.pth"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "pip install -r $req (numpy held at Debian's version by constraints.txt)"
        "$PY" -m pip install -q -c constraints.txt -r "$req"
        echo "$want" > "$stamp"
    fi
}

# The `ktextures` command (pyproject.toml [project.scripts]) in the venv, editable into this checkout so that
# models/ and data/ stay beside the code; re-run when pyproject.toml or the checkout's path changes. A venv that
# is a link (one venv shared by several working copies) is left alone: installing would point it at this copy.
install_cli() {
    local stamp="$VENV/.stamp-cli" want
    want=$( (echo "$ROOT"; cat pyproject.toml) | sha256sum | cut -c1-16)
    if [ -L "$VENV" ]; then
        log "$VENV is a link to a shared venv: not installing the ktextures command from this checkout"
    elif [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "pip install -e . (the ktextures command)"
        "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
        echo "$want" > "$stamp"
    fi
}

compile_resources() {
    if [ ! -f ktextures_plugin/resources.py ] || [ resources.qrc -nt ktextures_plugin/resources.py ] \
        || [ -n "$(find ktextures_plugin/icons -newer ktextures_plugin/resources.py 2>/dev/null)" ]; then
        log "pyrcc5 resources.qrc -> ktextures_plugin/resources.py"
        pyrcc5 -o ktextures_plugin/resources.py resources.qrc
        sed -i 's/^from PyQt5 import QtCore/from qgis.PyQt import QtCore/' ktextures_plugin/resources.py
    fi
}

# A hermetic QGIS profile in .build/ with this checkout installed as plugin "ktextures" and enabled.
plugin_env() {
    mkdir -p "$BUILD/plugins" "$BUILD/qgis-profile"
    ln -sfn "$ROOT" "$BUILD/plugins/$PLUGIN_ID"
    export QGIS_PLUGINPATH="$BUILD/plugins"
    export QGIS_CUSTOM_CONFIG_PATH="$BUILD/qgis-profile"
    export PATH="$VENV/bin:$PATH"       # qgis_process's embedded Python then sees the venv (onnxruntime)
    local ini="$QGIS_CUSTOM_CONFIG_PATH/profiles/default/QGIS/QGIS3.ini"
    if ! grep -q "^$PLUGIN_ID=true" "$ini" 2>/dev/null; then
        qgis_process.bin plugins enable "$PLUGIN_ID" >/dev/null 2>&1 || true   # rc 1 when already enabled
    fi
}

cmd=${1:-help}; shift || true
case "$cmd" in
    setup)
        setup_system; setup_venv requirements-dev.txt; install_cli; compile_resources ;;
    demo)
        setup_system; setup_venv requirements.txt; install_cli; compile_resources; plugin_env
        OUT=${1:-"$ROOT/demo-output"}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
        rm -f "$OUT/classes.tif" "$OUT/polygons.gpkg" "$OUT/report.csv" "$OUT/report.html"
        log "qgis_process.bin run ktextures:segment on the bundled Sentinel-2 sample"
        qgis_process.bin run ktextures:segment -- \
            INPUT="$ROOT/data/s2_brandenburg_sample_b2b3b4b8_10m.tif" \
            OUTPUT_RASTER="$OUT/classes.tif" OUTPUT_VECTOR="$OUT/polygons.gpkg" \
            OUTPUT_REPORT="$OUT/report.csv" OUTPUT_HTML="$OUT/report.html" 2> >(grep -v 'setapi() is deprecated' >&2)
        echo; echo "Per-class area ($OUT/report.csv):"; awk -F, '{printf "  %-9s %-22s %12s %14s %8s\n", $1, $2, $3, $4, $5}' "$OUT/report.csv"
        echo; echo "Wrote $OUT/classes.tif, $OUT/polygons.gpkg and $OUT/report.html (open it in a browser)" ;;
    test)
        setup_system; setup_venv requirements-dev.txt; install_cli; compile_resources; plugin_env
        "$PY" -m pytest "$@" ;;
    lint)
        # Only ruff, in its own small venv: linting needs neither QGIS nor torch.
        if [ ! -x "$BUILD/lint-venv/bin/ruff" ] || ! grep -qx "$(grep -o 'ruff==[0-9.]*' requirements-dev.txt)" \
            <("$BUILD/lint-venv/bin/pip" freeze 2>/dev/null); then
            dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "install ok installed" \
                || APT_PACKAGES="python3-venv" setup_system
            log "installing $(grep -o 'ruff==[0-9.]*' requirements-dev.txt) into $BUILD/lint-venv"
            /usr/bin/python3 -m venv "$BUILD/lint-venv"
            "$BUILD/lint-venv/bin/pip" install -q "$(grep -o 'ruff==[0-9.]*' requirements-dev.txt)"
        fi
        "$BUILD/lint-venv/bin/ruff" check "${@:-.}" ;;
    screenshots)
        # the README's screenshots, from a real QGIS desktop window under Xvfb (docs/screenshots/make.py)
        setup_system; [ -x "$PY" ] || setup_venv requirements.txt; compile_resources; plugin_env
        if ! command -v xvfb-run >/dev/null; then
            SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
            $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends xvfb xauth
        fi
        unset QT_QPA_PLATFORM
        KTEXTURES_ROOT="$ROOT" timeout 240 xvfb-run -a -s "-screen 0 1600x1000x24" qgis --nologo --noversioncheck \
            --code "$ROOT/docs/screenshots/make.py" 2>&1 | grep -v 'setapi() is deprecated' | tee "$BUILD/screenshots.log"
        grep -q "SCREENSHOTS DONE" "$BUILD/screenshots.log" ;;
    walkthrough)
        # docs/screenshots/walkthrough.py in a QGIS window under Xvfb: a fresh profile, the zip from `package`,
        # QGIS's own Python without this venv (onnxruntime and torch really missing); log in .build/walkthrough
        "$0" package
        APT_PACKAGES="xvfb xauth python3-pil" setup_system
        WORK="$BUILD/walkthrough"; rm -rf "$WORK"; mkdir -p "$WORK/profile"
        unset QT_QPA_PLATFORM QGIS_PLUGINPATH PYTHONPATH PYTHONHOME VIRTUAL_ENV
        PATH=$(printf %s "$PATH" | tr : '\n' | grep -vxF "$VENV/bin" | paste -sd: -)
        PYTHONFAULTHANDLER=1 QGIS_CUSTOM_CONFIG_PATH="$WORK/profile" KTEXTURES_ROOT="$ROOT" KTEXTURES_ZIP="$ROOT/dist/$PLUGIN_ID.zip" \
            KTEXTURES_WORK="$WORK" KTEXTURES_FIT_STEPS="${FIT_STEPS:-}" \
            timeout 7200 nice -n 10 xvfb-run -a -s "-screen 0 1600x1000x24" /usr/bin/qgis --nologo --noversioncheck \
            --code "$ROOT/docs/screenshots/walkthrough.py" > "$WORK/qgis.out" 2>&1 || true
        [ -d "$WORK/raw" ] && /usr/bin/python3 docs/screenshots/shrink.py "$WORK/raw" docs/screenshots
        grep -E 'PROBLEM|STEP|WALKTHROUGH' "$WORK/walkthrough.log" | cut -c1-400 || true
        grep -q "WALKTHROUGH DONE: 0 problem" "$WORK/walkthrough.log" ;;
    package)
        setup_system; compile_resources
        rm -rf "$BUILD/package" dist/$PLUGIN_ID.zip; mkdir -p "$BUILD/package/$PLUGIN_ID" dist
        # data/: the bundled sample with its credit and licence (data/README.md); docs/: what the plugin's
        # help and README point to
        cp -r metadata.txt __init__.py LICENSE README.md resources.qrc ktextures_plugin models data docs \
            "$BUILD/package/$PLUGIN_ID/"
        find "$BUILD/package" -name __pycache__ -prune -exec rm -rf {} +
        (cd "$BUILD/package" && zip -qr "$ROOT/dist/$PLUGIN_ID.zip" "$PLUGIN_ID")
        log "wrote dist/$PLUGIN_ID.zip" ;;
    *)
        sed -n '2,13p' "$0"; exit 2 ;;
esac
