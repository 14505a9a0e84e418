#!/usr/bin/env bash
# Public, labelled evaluation data for the Trust & Safety models, from the package registries
# only (Debian, PyPI, crates.io), none of it written by this project. Idempotent: every step
# is skipped when its output exists. Used by benchmarks/moderation_direct.py.
#
#   offensive text   crates.io rustrict 0.7.39 (MIT OR Apache-2.0): src/test_positive.txt,
#                    src/test_negative.txt, src/test_safe.txt, src/false_positives.txt;
#                    Debian fortunes (English, offensive ones removed by Debian), fortunes-es vs
#                    fortunes-es-off, fortunes-it vs fortunes-it-off (offensive sections).
#   contact details  PyPI presidio-evaluator 0.3.2 (MIT): data_generator/raw_data/templates.txt and
#                    FakeNameGenerator.com_3000.csv; PyPI urlextract 1.10.0 sdist (MIT): the URL and
#                    e-mail cases of tests/unit/*.py.
#   OCR              Debian libtasn1-doc and shared-mime-info PDFs (pdfTeX, text layer = ground
#                    truth), rendered with poppler-utils' pdftoppm, text from pdftotext.
#   nudity negatives Debian opencv-doc examples/data (photos and two videos); scikit-image's
#                    packaged images come with the project venv.
set -euo pipefail

DEST="${UNDERSTANDING_TS_EVAL_DIR:-${UNDERSTANDING_CACHE:-$HOME/.cache/understanding}/eval-data/ts}"
mkdir -p "$DEST"/{debs,debian,pypi,crates,ocr}
log() { printf '[fetch-ts] %s\n' "$*" >&2; }

# ------------------------------------------------------------------ Debian (binary packages, extracted, not installed)
DEBS=(
  "fortunes=1:1.99.1-7.3" "fortunes-es=1.36" "fortunes-es-off=1.36" "fortunes-it=1.99-4.1" "fortunes-it-off=1.99-4.1"
  "opencv-doc=4.6.0+dfsg-12" "libtasn1-doc=4.19.0-2+deb12u1" "shared-mime-info=2.2-1"
)
need_update=1
for spec in "${DEBS[@]}"; do
  pkg="${spec%%=*}"
  [[ -f "$DEST/debian/$pkg/.done" ]] && continue
  if ! ls "$DEST/debs/${pkg}_"*.deb >/dev/null 2>&1; then
    if ((need_update)) && ! apt-cache show "$pkg" >/dev/null 2>&1; then apt-get update -qq; fi
    need_update=0
    # The pinned version when the mirror still has it, else the current one (said in the manifest).
    (cd "$DEST/debs" && { apt-get download -qq "$spec" 2>/dev/null || apt-get download -qq "$pkg"; })
  fi
  rm -rf "$DEST/debian/$pkg" && mkdir -p "$DEST/debian/$pkg"
  dpkg-deb -x "$DEST/debs/${pkg}_"*.deb "$DEST/debian/$pkg"
  touch "$DEST/debian/$pkg/.done"
  log "debian $pkg: $(dpkg-deb -f "$DEST/debs/${pkg}_"*.deb Version)"
done

# ------------------------------------------------------------------ PyPI
PY="${PYTHON:-python3}"
if [[ ! -f "$DEST/pypi/presidio-evaluator/.done" ]]; then
  tmp="$(mktemp -d)"
  "$PY" -m pip download -q --no-deps --only-binary :all: presidio-evaluator==0.3.2 -d "$tmp"
  rm -rf "$DEST/pypi/presidio-evaluator" && mkdir -p "$DEST/pypi/presidio-evaluator"
  "$PY" -m zipfile -e "$tmp"/presidio_evaluator-0.3.2-*.whl "$DEST/pypi/presidio-evaluator"
  rm -rf "$tmp"; touch "$DEST/pypi/presidio-evaluator/.done"; log "pypi presidio-evaluator 0.3.2"
fi
if [[ ! -f "$DEST/pypi/urlextract/.done" ]]; then
  tmp="$(mktemp -d)"
  "$PY" -m pip download -q --no-deps --no-binary :all: urlextract==1.10.0 -d "$tmp"
  rm -rf "$DEST/pypi/urlextract" && mkdir -p "$DEST/pypi/urlextract"
  tar -xzf "$tmp"/urlextract-1.10.0.tar.gz -C "$DEST/pypi/urlextract" --strip-components=1
  rm -rf "$tmp"; touch "$DEST/pypi/urlextract/.done"; log "pypi urlextract 1.10.0 (sdist)"
fi

# ------------------------------------------------------------------ crates.io (cargo fetch of a throwaway manifest)
if [[ ! -f "$DEST/crates/rustrict/.done" ]]; then
  command -v cargo >/dev/null || { log "cargo is needed to fetch the rustrict crate"; exit 1; }
  tmp="$(mktemp -d)"
  mkdir -p "$tmp/src" && echo 'fn main() {}' >"$tmp/src/main.rs"
  cat >"$tmp/Cargo.toml" <<'EOF'
[package]
name = "ts-eval-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
rustrict = { version = "=0.7.39", default-features = false }
EOF
  (cd "$tmp" && cargo fetch -q)
  src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/rustrict-0.7.39 | head -1)"
  rm -rf "$DEST/crates/rustrict" && mkdir -p "$DEST/crates/rustrict"
  cp "$src"/src/test_positive.txt "$src"/src/test_negative.txt "$src"/src/test_safe.txt "$src"/src/false_positives.txt \
    "$src"/Cargo.toml "$DEST/crates/rustrict/"
  cp "$src"/LICENSE* "$DEST/crates/rustrict/" 2>/dev/null || true
  rm -rf "$tmp"; touch "$DEST/crates/rustrict/.done"; log "crates rustrict 0.7.39"
fi

# ------------------------------------------------------------------ OCR pages: PDF text layer as ground truth
if ! command -v pdftoppm >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null
  else log "poppler-utils (pdftoppm, pdftotext) is needed to render the OCR pages"; exit 1; fi
fi
render() {  # pdf, first page, last page, name
  local pdf="$1" first="$2" last="$3" name="$4" page
  for ((page = first; page <= last; page++)); do
    local out="$DEST/ocr/${name}-p${page}"
    [[ -f "$out.txt" && -f "$out-150dpi.png" && -f "$out-100dpi.png" ]] && continue
    pdftotext -q -f "$page" -l "$page" "$pdf" "$out.txt"
    pdftoppm -q -f "$page" -l "$page" -r 150 -gray -png -singlefile "$pdf" "$out-150dpi"
    pdftoppm -q -f "$page" -l "$page" -r 100 -gray -png -singlefile "$pdf" "$out-100dpi"
  done
}
render "$DEST/debian/shared-mime-info/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf" 3 8 shared-mime-info
render "$DEST/debian/libtasn1-doc/usr/share/doc/libtasn1-doc/libtasn1.pdf" 7 12 libtasn1

# ------------------------------------------------------------------ manifest
{
  printf 'registry\tpackage\tversion\tlicence\tused for\n'
  for deb in "$DEST"/debs/*.deb; do
    pkg="$(dpkg-deb -f "$deb" Package)"
    printf 'debian\t%s\t%s\tsee usr/share/doc/%s/copyright\t%s\n' "$pkg" "$(dpkg-deb -f "$deb" Version)" "$pkg" \
      "$(case "$pkg" in fortunes*) echo offensive-text;; opencv-doc) echo nudity-negatives;; *) echo ocr;; esac)"
  done
  printf 'pypi\tpresidio-evaluator\t0.3.2\tMIT\tcontacts (templates + FakeNameGenerator identities)\n'
  printf 'pypi\turlextract\t1.10.0\tMIT\tcontacts (URL/e-mail test cases)\n'
  printf 'crates\trustrict\t0.7.39\tMIT OR Apache-2.0\toffensive-text\n'
} >"$DEST/MANIFEST.tsv"
log "ready: $DEST"
