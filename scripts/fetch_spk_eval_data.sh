#!/usr/bin/env bash
# Reference data for speaker diarization (benchmarks/diarization_bench.py, tests/unit/pipelines/test_diarization.py).
#
# The pyannote.audio 4.0.7 wheel on PyPI (MIT, (c) CNRS / pyannoteAI) ships a
# 30 s excerpt of a two-speaker telephone conversation with its reference
# speaker annotation and transcript: pyannote/audio/sample/sample.{wav,rttm,stm}
# (16 kHz mono 16-bit PCM; speakers "speaker90" and "speaker91", named Diane and
# Sheila in the transcript; speech from 6.69 s to 30 s, two short overlaps).
# Only the wheel is downloaded (pip, --no-deps, pinned by sha256), nothing is
# installed; the four files are extracted into the cache. Idempotent: a second
# run checks the hashes and does nothing.
set -euo pipefail

CACHE="${UNDERSTANDING_CACHE:-$HOME/.cache/understanding}"
DEST="$CACHE/eval-data/spk/pyannote-audio-4.0.7"
PYTHON="${PYTHON:-python3}"
WHEEL=pyannote_audio-4.0.7-py3-none-any.whl
WHEEL_SHA256=852ea15c4d85bc34773e618267603ffca6a521669a74d33742692cc67fc700d6
declare -A FILES=(
  [sample.wav]=c319b4abca767b124e41432d364fd7df006cb26bb79d09326c487d606a134e6e
  [sample.rttm]=d78fe62c69d8e6dcbb42c26adfce83faccb374c5a1e6d987fe37f85f1c173c87
  [sample.stm]=f861f3004927e1c4429199f9695bfd252def75d7d5e4bdf735d3d85fd4a667f7
)

log() { printf '[fetch_spk_eval_data] %s\n' "$*" >&2; }

complete() {
  local name
  for name in "${!FILES[@]}"; do
    [[ -f "$DEST/$name" ]] || return 1
    [[ "$(sha256sum "$DEST/$name" | cut -d' ' -f1)" == "${FILES[$name]}" ]] || return 1
  done
  [[ -f "$DEST/LICENSE" ]]
}

if complete; then
  log "present: $DEST"
  echo "$DEST"
  exit 0
fi

mkdir -p "$DEST"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
log "downloading $WHEEL from PyPI (no dependencies, not installed)"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "pyannote.audio==4.0.7"
[[ "$(sha256sum "$tmp/$WHEEL" | cut -d' ' -f1)" == "$WHEEL_SHA256" ]] || { log "$WHEEL: unexpected sha256"; exit 1; }
"$PYTHON" - "$tmp/$WHEEL" "$DEST" <<'EOF'
import pathlib, sys, zipfile
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
members = {
    "pyannote/audio/sample/sample.wav": "sample.wav",
    "pyannote/audio/sample/sample.rttm": "sample.rttm",
    "pyannote/audio/sample/sample.stm": "sample.stm",
    "pyannote_audio-4.0.7.dist-info/licenses/LICENSE": "LICENSE",
}
with zipfile.ZipFile(wheel) as zf:
    for member, name in members.items():
        tmp = dest / f".{name}.tmp"
        tmp.write_bytes(zf.read(member))
        tmp.replace(dest / name)
EOF
complete || { log "extracted files do not match their sha256"; exit 1; }
log "ready: $DEST"
echo "$DEST"
