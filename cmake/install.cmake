# `cmake --install build --prefix P` installs libdagger, the public headers under P/include/dagger
# and a CMake package (P/lib/cmake/dagger) that gives `find_package(dagger CONFIG)` the target
# dagger::dagger. What is installed is what a user's program may include: every header of
# graph/, autodiff/, runtime/ and models/, and the three codegen/ headers free of LLVM.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS dagger_lib EXPORT daggerTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES include/dagger/dagger.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dagger)
foreach(layer graph autodiff runtime models)
  install(DIRECTORY ${layer}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dagger/${layer}
          FILES_MATCHING PATTERN "*.h" PATTERN "*.def")
endforeach()
install(FILES codegen/jit.h codegen/jit_executable.h codegen/fusion.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dagger/codegen)
# Installed, the CLI finds libdagger in the prefix's library folder.
set_target_properties(dagger PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
install(TARGETS dagger RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(dagger_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/dagger)
install(EXPORT daggerTargets NAMESPACE dagger:: DESTINATION ${dagger_cmake_dir})
configure_package_config_file(cmake/daggerConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/daggerConfig.cmake
                              INSTALL_DESTINATION ${dagger_cmake_dir})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/daggerConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/daggerConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/daggerConfigVersion.cmake
        DESTINATION ${dagger_cmake_dir})
