# Cross build for 64-bit ARM Linux with Debian's GNU cross toolchain (gcc-aarch64-linux-gnu).
# ctest runs every test through qemu-user, so the NEON kernels are exercised on an x86 host.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(BIFSMN_AARCH64_SYSROOT /usr/aarch64-linux-gnu CACHE PATH "aarch64 glibc root (libraries for qemu -L)")

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_AR aarch64-linux-gnu-ar CACHE FILEPATH "")
set(CMAKE_RANLIB aarch64-linux-gnu-ranlib CACHE FILEPATH "")

set(CMAKE_FIND_ROOT_PATH ${BIFSMN_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)

# -L lets dynamically linked test binaries find the aarch64 loader and libc; static ones ignore it.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;${BIFSMN_AARCH64_SYSROOT})
