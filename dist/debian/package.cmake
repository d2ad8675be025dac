# The Debian packages, made by CPack from the install rules (scripts/package.sh):
#   rewind         the plugin (in nbdkit's plugin directory), `rewind`, `rewind-attach`,
#                  rewind@.service and its user, the man pages rewind(1) and
#                  nbdkit-rewind-plugin(1), the docs
#   rewind-server  `rewind-server`, its unit and user, rewind-server(8)
# CPack rather than a debian/ directory: the install rules already say where every
# file goes (the plugin directory comes from nbdkit's pkg-config), so the packages
# cannot drift from `cmake --install`; dpkg-shlibdeps finds the library dependencies.
# Configure with -DCMAKE_INSTALL_PREFIX=/usr.

# What Debian's policy asks of every package besides: the copyright and a changelog.
# (A native package: its changelog is changelog.gz.)
set(changelog ${CMAKE_BINARY_DIR}/debian/changelog.gz)
add_custom_command(OUTPUT ${changelog}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/debian
  COMMAND sh -c "gzip -9n -c ${CMAKE_SOURCE_DIR}/dist/debian/changelog >${changelog}"
  DEPENDS ${CMAKE_SOURCE_DIR}/dist/debian/changelog VERBATIM)
add_custom_target(debian-changelog ALL DEPENDS ${changelog})
foreach(component rewind server)
  if(component STREQUAL server)
    set(package rewind-server)
  else()
    set(package rewind)
  endif()
  install(FILES dist/debian/copyright ${changelog}
    DESTINATION share/doc/${package} COMPONENT ${component})
endforeach()

# The changelog's newest entry must be this version.
file(STRINGS dist/debian/changelog first_line LIMIT_COUNT 1)
if(NOT first_line MATCHES "^rewind \\(${PROJECT_VERSION}\\) ")
  message(FATAL_ERROR "dist/debian/changelog starts with '${first_line}', not version "
    "${PROJECT_VERSION} of project(); add an entry for it")
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME rewind)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "rewind maintainers <maintainers@rewind.example>")
set(CPACK_PACKAGE_VENDOR "the rewind project")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL rewind server)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://rewind.example/")

set(CPACK_DEBIAN_REWIND_PACKAGE_NAME rewind)
set(CPACK_DEBIAN_REWIND_PACKAGE_DEPENDS "nbdkit")
set(CPACK_DEBIAN_REWIND_PACKAGE_RECOMMENDS "libnbd-bin, nbd-client, qemu-utils")
# The first line is the synopsis; CPack indents the others by one space.
set(CPACK_DEBIAN_REWIND_DESCRIPTION "continuous data protection for block devices
An nbdkit plugin serves a disk image over NBD and journals every write with
a sequence number and a time, so that the disk can be restored to, or
served at, any moment of its history. The journal can be shipped live to a
rewind-server or to S3-compatible object storage, compressed and
encrypted. The rewind tool inspects, marks, restores, serves, verifies and
bisects journals.")
set(CPACK_DEBIAN_REWIND_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/dist/debian/rewind/postinst ${CMAKE_SOURCE_DIR}/dist/debian/rewind/postrm)

set(CPACK_DEBIAN_SERVER_PACKAGE_NAME rewind-server)
set(CPACK_DEBIAN_SERVER_DESCRIPTION "log server for rewind journals
rewind-server takes the journals of rewind volumes from many machines over
TLS into a store on disk or in S3-compatible object storage, each host
with a token that grants it only its own volumes. Every rewind command
reads the stored volumes.")
set(CPACK_DEBIAN_SERVER_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/dist/debian/rewind-server/postinst
  ${CMAKE_SOURCE_DIR}/dist/debian/rewind-server/prerm
  ${CMAKE_SOURCE_DIR}/dist/debian/rewind-server/postrm)

include(CPack)
