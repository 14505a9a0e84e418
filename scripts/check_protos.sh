#!/usr/bin/env bash
# Check the contract in protos/ the way other teams consume it:
#   1. buf lint                      (rules in protos/buf.yaml)
#   2. buf breaking                  against the last released contract (protos/released/v1.binpb)
#   3. Go stubs                      protoc-gen-go + protoc-gen-go-grpc, then `go build` with a throwaway go.mod
#   4. Java stubs                    protoc + protoc-gen-grpc-java (native builds from Maven Central), javac via Maven
# Tools are installed once into $UNDERSTANDING_CACHE/tools (default ~/.cache/understanding/tools),
# never into the repo; generated code goes to a temp dir that is removed at exit.
#
# Usage: scripts/check_protos.sh [--skip-go] [--skip-java] [--keep]
# Release step (after a contract change is merged and released): see protos/released/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${UNDERSTANDING_CACHE:-$HOME/.cache/understanding}"
TOOLS="$CACHE/tools"
BIN="$TOOLS/bin"

# Versions: bump together, deliberately.
BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12        # google.golang.org/protobuf
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2     # google.golang.org/grpc/cmd/protoc-gen-go-grpc
GO_GRPC_VERSION=v1.85.0               # google.golang.org/grpc for the compile check
PROTOC_JAVA_VERSION=4.35.1            # com.google.protobuf:protoc (Java gencode) = protobuf-java runtime
GRPC_JAVA_VERSION=1.85.0              # io.grpc runtime jars the Java stubs compile against
# protoc-gen-grpc-java is a native binary on Maven Central; the registry here
# serves the linux-x86_64 build of 1.80.0 but not of 1.84.x/1.85.x. Code it
# generates compiles against newer grpc-java runtimes.
GRPC_JAVA_PLUGIN_VERSION=1.80.0

skip_go=0 skip_java=0 keep=0
for arg in "$@"; do
  case "$arg" in
    --skip-go) skip_go=1 ;;
    --skip-java) skip_java=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

started=$(date +%s)
step_started=$started
log() { printf '[check_protos] %s\n' "$*" >&2; }
step() {
  local now; now=$(date +%s)
  log "$1 ($(( now - step_started )) s)"
  step_started=$now
}
die() { log "FAILED: $*"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/check_protos.XXXXXX")"
if (( keep )); then log "keeping generated code in $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi

mkdir -p "$BIN"
export PATH="$BIN:$PATH"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

# ------------------------------------------------------------------ tools
go_tool() {  # go_tool NAME MODULE@VERSION: install into $BIN unless that version is there
  local name="$1" pkg="$2" stamp="$BIN/.$1.version"
  if [[ -x "$BIN/$name" && "$(cat "$stamp" 2>/dev/null)" == "$pkg" ]]; then return; fi
  command -v go >/dev/null || die "go is not installed (needed to install $name)"
  log "installing $pkg (once, into $BIN)"
  GOBIN="$BIN" go install "$pkg" || die "go install $pkg"
  echo "$pkg" >"$stamp"
}

go_tool buf "github.com/bufbuild/buf/cmd/buf@$BUF_VERSION"
step "buf $(buf --version) ready"

# ------------------------------------------------------------------ lint + breaking
cd "$ROOT/protos"
buf lint || die "buf lint (rules: protos/buf.yaml)"
step "buf lint passed"
buf breaking --against released/v1.binpb \
  || die "buf breaking: the change above breaks the released v1 contract; add fields instead (see protos/released/README.md)"
step "buf breaking passed against protos/released/v1.binpb"

# ------------------------------------------------------------------ Go
if (( ! skip_go )); then
  go_tool protoc-gen-go "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  go_tool protoc-gen-go-grpc "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  GO_OUT="$WORK/go"
  mkdir -p "$GO_OUT"
  cat >"$WORK/buf.gen.go.yaml" <<EOF
version: v2
plugins:
  - local: protoc-gen-go
    out: $GO_OUT
    opt: paths=source_relative
  - local: protoc-gen-go-grpc
    out: $GO_OUT
    opt: paths=source_relative
EOF
  buf generate --template "$WORK/buf.gen.go.yaml" || die "buf generate (Go)"
  # The module path matches the protos' go_package prefix.
  cat >"$GO_OUT/go.mod" <<EOF
module github.com/understanding/understanding/gen/go

go 1.24

require (
	google.golang.org/grpc $GO_GRPC_VERSION
	google.golang.org/protobuf $PROTOC_GEN_GO_VERSION
)
EOF
  # A consumer in miniature: a client stub and an event decoded from bytes.
  mkdir -p "$GO_OUT/cmd/smoke"
  cat >"$GO_OUT/cmd/smoke/main.go" <<'EOF'
package main

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	understandingv1 "github.com/understanding/understanding/gen/go/understanding/v1"
)

func main() {
	conn, err := grpc.NewClient("127.0.0.1:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	_ = understandingv1.NewUnderstandingClient(conn)
	raw, _ := proto.Marshal(&understandingv1.AnalysisEvent{EventId: "e-1", Analysis: &understandingv1.Analysis{MediaId: "m-1"}})
	var event understandingv1.AnalysisEvent
	if err := proto.Unmarshal(raw, &event); err != nil {
		panic(err)
	}
	fmt.Println(event.GetAnalysis().GetMediaId())
}
EOF
  (cd "$GO_OUT" && go mod tidy >/dev/null 2>"$WORK/go-tidy.log" || { cat "$WORK/go-tidy.log" >&2; exit 1; }) || die "go mod tidy"
  (cd "$GO_OUT" && go vet ./... && go build ./... && go run ./cmd/smoke >/dev/null) || die "Go stubs do not compile"
  step "Go: $(find "$GO_OUT" -name '*.pb.go' | wc -l) files generated, vetted, built and run"
fi

# ------------------------------------------------------------------ Java
if (( ! skip_java )); then
  command -v mvn >/dev/null || die "mvn is not installed (apt-get install maven)"
  POM="$ROOT/scripts/protos-java/pom.xml"
  MVN=(mvn -q -B -f "$POM" "-Dmaven.repo.local=$TOOLS/m2")
  case "$(uname -m)" in
    x86_64|amd64) arch=x86_64 ;;
    aarch64|arm64) arch=aarch_64 ;;
    *) die "no protoc build for $(uname -m) on Maven Central" ;;
  esac
  maven_exe() {  # maven_exe GROUP:ARTIFACT:VERSION DEST: a native tool published on Maven Central
    local coords="$1" dest="$2"
    [[ -x "$dest" ]] && return
    log "fetching $coords:exe:linux-$arch (once, via Maven)"
    rm -rf "$WORK/exe" && mkdir -p "$WORK/exe"
    "${MVN[@]}" dependency:copy "-Dartifact=$coords:exe:linux-$arch" "-DoutputDirectory=$WORK/exe" >"$WORK/mvn.log" 2>&1 \
      || { cat "$WORK/mvn.log" >&2; die "cannot fetch $coords"; }
    install -m 0755 "$WORK"/exe/*.exe "$dest"
  }
  PROTOC="$BIN/protoc-$PROTOC_JAVA_VERSION"
  PLUGIN="$BIN/protoc-gen-grpc-java-$GRPC_JAVA_PLUGIN_VERSION"
  maven_exe "com.google.protobuf:protoc:$PROTOC_JAVA_VERSION" "$PROTOC"
  maven_exe "io.grpc:protoc-gen-grpc-java:$GRPC_JAVA_PLUGIN_VERSION" "$PLUGIN"
  JAVA_OUT="$WORK/java"
  mkdir -p "$JAVA_OUT"
  cat >"$WORK/buf.gen.java.yaml" <<EOF
version: v2
plugins:
  - protoc_builtin: java
    protoc_path: $PROTOC
    out: $JAVA_OUT
  - local: $PLUGIN
    out: $JAVA_OUT
EOF
  buf generate --template "$WORK/buf.gen.java.yaml" || die "buf generate (Java)"
  cp "$ROOT/scripts/protos-java/Smoke.java" "$JAVA_OUT/"
  "${MVN[@]}" "-Dgen.dir=$JAVA_OUT" "-Dprotobuf.version=$PROTOC_JAVA_VERSION" "-Dgrpc.version=$GRPC_JAVA_VERSION" \
    compile exec:java >"$WORK/mvn-java.log" 2>&1 || { cat "$WORK/mvn-java.log" >&2; die "Java stubs do not compile"; }
  step "Java: $(find "$JAVA_OUT" -name '*.java' | wc -l) files generated, compiled, Smoke ran"
fi

log "all checks passed in $(( $(date +%s) - started )) s"
