#!/usr/bin/env bash
# Builds ggml's CPU library (static, Release, GGML_NATIVE=ON, no OpenMP, no llama, no tests or
# examples) for the ggml peer rows of benches/ggml_gemv.rs, from the llama.cpp that PyPI's
# llama-cpp-python sdist vendors, and prints the variable that turns the peer on.
#
#   benches/peers/build_ggml.sh [OUT_DIR [SDIST]]
#
# OUT_DIR defaults to target/peers/ggml (from the repository root); SDIST is a path to
# llama_cpp_python-0.3.36.tar.gz, downloaded into OUT_DIR when not given. Needs curl, tar, a C/C++
# compiler and cmake >= 3.14 (`pip install cmake` if the distribution has none).
#
# Pinned: llama-cpp-python 0.3.36, vendoring llama.cpp commit 0c1e57098bba43ac29e6e3b677cdceebdd22334f,
# ggml 0.25.3.
set -euo pipefail

VERSION=0.3.36
URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-${VERSION}.tar.gz"
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$ROOT/target/peers/ggml}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
SDIST="${2:-$OUT/llama_cpp_python-${VERSION}.tar.gz}"

if [ ! -f "$SDIST" ]; then
    echo "downloading llama-cpp-python ${VERSION} sdist (77 MB) to $SDIST" >&2
    curl -sSfL -o "$SDIST.part" "$URL"
    mv "$SDIST.part" "$SDIST"
fi
echo "$SHA256  $SDIST" | sha256sum -c --quiet - >&2

SRC="$OUT/src"
rm -rf "$SRC"
mkdir -p "$SRC"
tar xzf "$SDIST" -C "$SRC" --strip-components=1 \
    "llama_cpp_python-${VERSION}/vendor/llama.cpp/ggml" \
    "llama_cpp_python-${VERSION}/.git/modules/vendor/llama.cpp/HEAD"
GGML="$SRC/vendor/llama.cpp/ggml"
COMMIT="$(cat "$SRC/.git/modules/vendor/llama.cpp/HEAD")"
# The sdist leaves out ggml's pkg-config template, which a standalone configure reads.
[ -f "$GGML/ggml.pc.in" ] || : > "$GGML/ggml.pc.in"

cmake -S "$GGML" -B "$OUT/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$OUT" \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON \
    -DGGML_OPENMP=OFF \
    -DGGML_LLAMAFILE=OFF \
    -DGGML_BACKEND_DL=OFF \
    -DGGML_BUILD_TESTS=OFF \
    -DGGML_BUILD_EXAMPLES=OFF >&2
cmake --build "$OUT/build" --config Release -j "${JOBS:-2}" --target ggml-base ggml-cpu >&2

# Only what the bench reads: the headers and the two static libraries.
mkdir -p "$OUT/include" "$OUT/lib"
cp "$GGML"/include/*.h "$OUT/include/"
find "$OUT/build" -name 'libggml-base.a' -exec cp {} "$OUT/lib/" \;
find "$OUT/build" -name 'libggml-cpu.a' -exec cp {} "$OUT/lib/" \;
printf 'llama-cpp-python %s\nllama.cpp %s\nggml %s\n' "$VERSION" "$COMMIT" \
    "$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$GGML/CMakeLists.txt" | paste -sd.)" \
    > "$OUT/VERSION"
cat "$OUT/VERSION" >&2
echo "export GREENAI_GGML_DIR=$OUT"
