# Cross build for 64-bit ARM Linux with clang: the same target, libraries and qemu runner as the GNU toolchain
# file, so the NEON inline assembly and intrinsics are checked under both compilers.
include(${CMAKE_CURRENT_LIST_DIR}/aarch64-linux-gnu.cmake)

set(CMAKE_C_COMPILER clang)
set(CMAKE_C_COMPILER_TARGET aarch64-linux-gnu)
