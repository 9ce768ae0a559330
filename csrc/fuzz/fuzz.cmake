# Fuzzing of the two parsers that read untrusted bytes (the .bfsm loader and bifsmn-infer's WAV reader) and of
# the streaming API under random chunking (csrc/fuzz/README.md). Included from CMakeLists.txt rather than added as a subdirectory, so that the per-file
# -m flags of the optimised kernels (source properties are directory-scoped) apply to the copies built here.
set(BIFSMN_FUZZ_TARGETS loader wav stream)
set(fuzz_loader_sources ${CMAKE_CURRENT_LIST_DIR}/fuzz_loader.c)
set(fuzz_wav_sources ${CMAKE_CURRENT_LIST_DIR}/fuzz_wav.c tools/wav.c)
set(fuzz_stream_sources ${CMAKE_CURRENT_LIST_DIR}/fuzz_stream.c)

# Every input that once crashed a target is kept in regressions/<target>/ and replayed by ctest in every build
# with tests, through the same entry point without libFuzzer (host-debug adds ASan and UBSan).
if(BIFSMN_BUILD_TESTS)
  foreach(t ${BIFSMN_FUZZ_TARGETS})
    add_executable(fuzz_replay_${t} ${CMAKE_CURRENT_LIST_DIR}/replay.c ${fuzz_${t}_sources})
    target_include_directories(fuzz_replay_${t} PRIVATE src kernels tools tests frontend)
    target_link_libraries(fuzz_replay_${t} PRIVATE bifsmn_static)
    file(GLOB inputs CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/regressions/${t}/*)
    list(FILTER inputs EXCLUDE REGEX "/[.][^/]*$")
    if(inputs)
      add_test(NAME fuzz_regressions_${t} COMMAND fuzz_replay_${t} ${inputs})
    endif()
  endforeach()
endif()

if(BIFSMN_BUILD_FUZZERS)
  include(CheckCSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS -fsanitize=fuzzer)
  set(CMAKE_REQUIRED_LINK_OPTIONS -fsanitize=fuzzer)
  check_c_source_compiles([[
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return data && size ? 0 : 0; }
]] BIFSMN_HAVE_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(NOT BIFSMN_HAVE_LIBFUZZER)
    message(FATAL_ERROR "BIFSMN_BUILD_FUZZERS: ${CMAKE_C_COMPILER} cannot link -fsanitize=fuzzer (libFuzzer); "
                        "configure with the fuzz preset, which uses clang (apt install clang)")
  endif()
  set(fuzz_flags -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1)
  add_library(bifsmn_fuzz_objects OBJECT ${BIFSMN_SOURCES})
  target_include_directories(bifsmn_fuzz_objects PUBLIC include PRIVATE src kernels frontend)
  target_compile_definitions(bifsmn_fuzz_objects PRIVATE ${BIFSMN_DEFINITIONS})
  target_compile_options(bifsmn_fuzz_objects PRIVATE ${fuzz_flags} -fsanitize=fuzzer-no-link)
  set(fuzz_loader_objects $<TARGET_OBJECTS:bifsmn_fuzz_objects>)
  set(fuzz_stream_objects $<TARGET_OBJECTS:bifsmn_fuzz_objects>)
  foreach(t ${BIFSMN_FUZZ_TARGETS})
    add_executable(fuzz_${t} ${fuzz_${t}_sources} ${fuzz_${t}_objects})
    target_include_directories(fuzz_${t} PRIVATE include src kernels tools tests frontend)
    target_compile_options(fuzz_${t} PRIVATE ${fuzz_flags} -fsanitize=fuzzer)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    if(MATH_LIBRARY)
      target_link_libraries(fuzz_${t} PRIVATE ${MATH_LIBRARY})
    endif()
  endforeach()
endif()
