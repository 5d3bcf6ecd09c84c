# ebpfcni_link_cni_statically(<executable> <our static libraries...>)
#
# Links <executable> against our static libraries (in dependency order) and
# the static archives of their third-party dependencies, as listed by
# `pkg-config --static` for gRPC++, protobuf and libnl-route, instead of the
# shared imported targets the libraries would pass on. Only glibc (and the
# runtime pieces that need it) stays dynamic.
#
# spdlog and fmt: Debian ships them as shared libraries only, and they need
# the shared libstdc++, so they stay dynamic too (as does libstdc++: two
# copies of it in one process would not share their state).
find_package(PkgConfig REQUIRED)
pkg_check_modules(EBPFCNI_STATIC_DEPS REQUIRED grpc++ protobuf libnl-route-3.0)

# Parts of glibc: always dynamic.
set(_ebpfcni_glibc_libs dl pthread rt m c)

function(ebpfcni_link_cni_statically executable)
  set(our_archives)
  foreach(library IN LISTS ARGN)
    list(APPEND our_archives $<TARGET_FILE:${library}>)
  endforeach()
  add_dependencies(${executable} ${ARGN})

  set(static_libs)
  set(dynamic_libs)
  foreach(lib IN LISTS EBPFCNI_STATIC_DEPS_STATIC_LIBRARIES)
    if(lib IN_LIST _ebpfcni_glibc_libs)
      list(APPEND dynamic_libs "-l${lib}")
    else()
      list(APPEND static_libs "-l${lib}")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES dynamic_libs)

  target_link_directories(${executable} PRIVATE ${EBPFCNI_STATIC_DEPS_STATIC_LIBRARY_DIRS})
  # A group: the absl archives reference each other in cycles.
  target_link_libraries(${executable} PRIVATE
    "-Wl,--start-group" ${our_archives} "-Wl,-Bstatic" ${static_libs} "-Wl,-Bdynamic" "-Wl,--end-group"
    spdlog::spdlog fmt::fmt ${dynamic_libs} Threads::Threads)
endfunction()
