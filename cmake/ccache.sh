# Sourced by the build scripts: ccache, in the user's cache directory (~/.cache/ccache),
# makes a re-run compile only what changed. base_dir and nohashdir let a build in another
# clone reuse it; the sloppiness lets it use headers a fresh clone has just written (ccache
# otherwise compiles anyway when a header is newer than the compile's start). Sets
# ccache_cmake_args for cmake.
bash "$(dirname "${BASH_SOURCE[0]}")/install-deps.sh" ccache
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export CCACHE_NOHASHDIR=true CCACHE_SLOPPINESS=include_file_mtime,include_file_ctime
ccache_cmake_args=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
