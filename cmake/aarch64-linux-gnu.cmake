# Cross-compiling for 64-bit ARM (Highway's NEON target) with Debian's
# g++-aarch64-linux-gnu and the arm64 builds of our dependencies (multiarch); tests run
# under qemu-user. See .ci/run for the packages.
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/usr/aarch64-linux-gnu)
# Highway's NEON target includes AES (+crypto); the baseline must match it, as for AVX2.
set(GEMMA4_ARCH_FLAGS "-march=armv8-a+crypto" CACHE STRING "Compiler flags choosing the SIMD target")
