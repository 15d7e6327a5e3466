# Run by the build (cmake -P) before libdagger is compiled: writes OUTPUT, a header defining
# DAGGER_BUILD_COMMIT, the commit of SOURCE_DIR being built, with " (with uncommitted changes)"
# after it when tracked files differ from that commit, or "unknown (not a git checkout)". The
# file is rewritten only when its text changes, so a build of an unchanged tree recompiles nothing.
set(commit "unknown (not a git checkout)")
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} -C ${SOURCE_DIR} rev-parse HEAD OUTPUT_VARIABLE head
                  RESULT_VARIABLE failed OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT failed)
    set(commit ${head})
    execute_process(COMMAND ${GIT_EXECUTABLE} -C ${SOURCE_DIR} status --porcelain --untracked-files=no
                    OUTPUT_VARIABLE changes RESULT_VARIABLE failed ERROR_QUIET)
    if(NOT failed AND NOT changes STREQUAL "")
      string(APPEND commit " (with uncommitted changes)")
    endif()
  endif()
endif()
set(text "#define DAGGER_BUILD_COMMIT \"${commit}\"\n")
set(old "")
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUTPUT} "${text}")
endif()
