#!/usr/bin/env python3
"""Fetch the public multilingual evaluation data from Debian's archive into the cache.

    python scripts/fetch_eval_data.py [--dest DIR] [--force]

Nothing here is written by the project; every file comes from a Debian package
fetched with `apt-get download` (the ordinary client of a registry we may use)
and only the files the benchmarks read are kept:

- **Parallel sentences** (benchmarks/_corpora.py `parallel_sentences`): the
  Fluent (.ftl) localization files of Firefox ESR, en-US from `firefox-esr`
  (its two omni.ja archives) and the human translations from
  `firefox-esr-l10n-{ko,ja,zh-cn,tr,ar,ru,de,es-es,th}` (each a langpack .xpi),
  all of one version, aligned by file and message id. MPL-2.0.
- **Labelled topics with translations** (`labelled_emoji`): Unicode's emoji
  groups and subgroups (`emoji-test.txt` from `unicode-data`) as labels, and
  CLDR's human-curated emoji names and keywords in each language
  (`common/annotations/*.xml` from `unicode-cldr-core`) as texts. Unicode
  License v3 (both).

Idempotent: a source whose `.complete` marker exists is skipped; a partial
extraction is removed and redone. The packages' versions and sha256 go to
`manifest.json`. Needs apt-get, dpkg-deb and a package list (`apt-get update`
is run once if a package has no candidate and we are root).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

# Our language code -> Firefox locale.
FIREFOX_LOCALES = {
    "ko": "ko",
    "ja": "ja",
    "zh": "zh-CN",
    "tr": "tr",
    "ar": "ar",
    "ru": "ru",
    "de": "de",
    "es": "es-ES",
    "th": "th",
}
CLDR_LANGS = ("en", "ko", "ja", "zh", "tr", "ar", "ru", "de", "es", "th")


def default_dest() -> pathlib.Path:
    base = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    return pathlib.Path(base) / "eval-data"


def log(msg: str) -> None:
    print(f"[fetch-eval-data] {msg}", file=sys.stderr)


def candidate_version(package: str) -> str:
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            return "" if version == "(none)" else version
    return ""


def ensure_package_lists(packages: list[str]) -> None:
    if all(candidate_version(p) for p in packages):
        return
    if os.geteuid() != 0:
        raise SystemExit(f"no candidate for some of {packages}: run `apt-get update` as root first")
    log("apt-get update (a package has no candidate)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    missing = [p for p in packages if not candidate_version(p)]
    if missing:
        raise SystemExit(f"Debian has no package {', '.join(missing)} for this release")


def download(package: str, version: str, workdir: pathlib.Path) -> pathlib.Path:
    """`apt-get download package=version` into workdir; the .deb's path."""
    subprocess.run(
        ["apt-get", "download", "-qq", f"{package}={version}"],
        cwd=workdir,
        check=True,
        stderr=subprocess.DEVNULL,  # "download is performed unsandboxed as root": harmless
    )
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise SystemExit(f"apt-get download {package}={version} produced no .deb")
    return debs[-1]


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_deb(deb: pathlib.Path, into: pathlib.Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)


def unzip_ftl(archive: pathlib.Path, locale: str, dest: pathlib.Path) -> int:
    """Copy [browser/]localization/<locale>/**.ftl out of an omni.ja or langpack .xpi; how many files.

    A langpack keeps the browser's files under `browser/localization/`, the
    omni.ja of `browser/` under `localization/`: both land in one tree.
    """
    marker = f"localization/{locale}/"
    count = 0
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            head, sep, rel = name.partition(marker)
            if sep and head in ("", "browser/") and name.endswith(".ftl"):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
                count += 1
    return count


class Fetcher:
    def __init__(self, dest: pathlib.Path, *, force: bool) -> None:
        self.dest = dest
        self.force = force
        self.manifest_path = dest / "manifest.json"
        self.manifest: dict[str, dict[str, object]] = (
            json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {}
        )

    def cached(self, key: str) -> bool:
        """The source was fetched before (its manifest entry names a complete directory)."""
        entry = self.manifest.get(key)
        return not self.force and entry is not None and (self.dest / str(entry["path"]) / ".complete").exists()

    def _fresh(self, target: pathlib.Path) -> bool:
        if (target / ".complete").exists() and not self.force:
            return False
        if target.exists():
            shutil.rmtree(target)
        return True

    def _done(self, target: pathlib.Path, key: str, entry: dict[str, object]) -> None:
        (target / ".complete").write_text(json.dumps(entry, indent=1, sort_keys=True))
        self.manifest[key] = entry
        self.manifest_path.write_text(json.dumps(self.manifest, indent=1, sort_keys=True) + "\n")

    def firefox(self) -> None:
        if self.cached("firefox-esr"):
            log(f"firefox-esr: cached ({self.manifest['firefox-esr']['version']})")
            return
        packages = ["firefox-esr"] + [f"firefox-esr-l10n-{loc.lower()}" for loc in FIREFOX_LOCALES.values()]
        ensure_package_lists(packages)
        version = candidate_version("firefox-esr")
        upstream = version.split("-")[0]
        target = self.dest / f"firefox-esr-{upstream}"
        if not self._fresh(target):
            log(f"firefox-esr {version}: cached in {target}")
            return
        # A langpack must be the same release as the English strings it translates.
        for package in packages[1:]:
            if candidate_version(package) != version:
                raise SystemExit(f"{package} {candidate_version(package)} differs from firefox-esr {version}")
        debs: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="eval-data-", dir=self.dest) as tmp:
            work = pathlib.Path(tmp)
            for package in packages:
                log(f"apt-get download {package}={version}")
                deb = download(package, version, work)
                debs[package] = sha256(deb)
                root = work / package
                extract_deb(deb, root)
                deb.unlink()
                if package == "firefox-esr":
                    files = sum(
                        unzip_ftl(root / rel, "en-US", target / "en")
                        for rel in ("usr/lib/firefox-esr/omni.ja", "usr/lib/firefox-esr/browser/omni.ja")
                    )
                    lang = "en"
                else:
                    locale = next(loc for loc in FIREFOX_LOCALES.values() if package.endswith(loc.lower()))
                    lang = next(code for code, loc in FIREFOX_LOCALES.items() if loc == locale)
                    (xpi,) = (root / "usr/lib/firefox-esr/browser/extensions").glob("langpack-*.xpi")
                    files = unzip_ftl(xpi, locale, target / lang)
                if files == 0:
                    raise SystemExit(f"{package}: no .ftl files found")
                log(f"  {lang}: {files} .ftl files")
                shutil.rmtree(root)
        self._done(
            target,
            "firefox-esr",
            {
                "source": "Debian packages firefox-esr + firefox-esr-l10n-*",
                "version": version,
                "licence": "MPL-2.0",
                "path": target.name,
                "deb_sha256": debs,
            },
        )

    def emoji(self) -> None:
        if self.cached("emoji"):
            log(f"emoji labels and CLDR annotations: cached ({self.manifest['emoji']['versions']})")
            return
        ensure_package_lists(["unicode-cldr-core", "unicode-data"])
        cldr_version = candidate_version("unicode-cldr-core")
        data_version = candidate_version("unicode-data")
        target = self.dest / f"emoji-cldr-{cldr_version.split('-')[0]}-unicode-{data_version.split('-')[0]}"
        if not self._fresh(target):
            log(f"emoji labels and CLDR annotations: cached in {target}")
            return
        debs: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="eval-data-", dir=self.dest) as tmp:
            work = pathlib.Path(tmp)
            for package, version in (("unicode-cldr-core", cldr_version), ("unicode-data", data_version)):
                log(f"apt-get download {package}={version}")
                deb = download(package, version, work)
                debs[package] = sha256(deb)
                extract_deb(deb, work / package)
                deb.unlink()
            target.mkdir(parents=True)
            annotations = work / "unicode-cldr-core/usr/share/unicode/cldr/common/annotations"
            for lang in CLDR_LANGS:
                shutil.copy2(annotations / f"{lang}.xml", target / f"annotations-{lang}.xml")
            shutil.copy2(work / "unicode-data/usr/share/unicode/emoji/emoji-test.txt", target / "emoji-test.txt")
            licence = work / "unicode-cldr-core/usr/share/doc/unicode-cldr-core/copyright"
            if licence.exists():
                shutil.copy2(licence, target / "copyright-unicode-cldr-core")
        self._done(
            target,
            "emoji",
            {
                "source": "Debian packages unicode-cldr-core (annotations) + unicode-data (emoji-test.txt)",
                "versions": {"unicode-cldr-core": cldr_version, "unicode-data": data_version},
                "licence": "Unicode License (data files)",
                "path": target.name,
                "deb_sha256": debs,
            },
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dest", type=pathlib.Path, default=default_dest())
    parser.add_argument("--force", action="store_true", help="fetch again even when cached")
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    fetcher = Fetcher(args.dest, force=args.force)
    fetcher.firefox()
    fetcher.emoji()
    print(args.dest)


if __name__ == "__main__":
    main()
