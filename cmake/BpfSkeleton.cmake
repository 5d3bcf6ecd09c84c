# Builds BPF C programs into libbpf skeleton headers, so binaries embed the
# object and never load a loose .o at run time.
#
#   ebpfcni_generate_vmlinux_h(<out_dir>)
#     Dumps the running kernel's BTF to <out_dir>/vmlinux.h (CO-RE types).
#   ebpfcni_bpf_skeleton(<name> SOURCE <file.bpf.c> OUT_DIR <dir>
#                        INCLUDES <dirs...> DEPENDS <files...>)
#     clang -target bpf ... -> <dir>/<name>.bpf.o
#     bpftool gen skeleton  -> <dir>/<name>.skel.h
#     Sets <name>_SKELETON to the header path in the caller's scope.
find_program(BPFTOOL_EXECUTABLE bpftool PATHS /usr/sbin /sbin REQUIRED)
find_program(BPF_CLANG_EXECUTABLE clang REQUIRED)

set(EBPFCNI_VMLINUX_BTF /sys/kernel/btf/vmlinux CACHE FILEPATH
    "Kernel BTF that vmlinux.h is generated from")

function(ebpfcni_generate_vmlinux_h out_dir)
  add_custom_command(
    OUTPUT ${out_dir}/vmlinux.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${BPFTOOL_EXECUTABLE} btf dump file ${EBPFCNI_VMLINUX_BTF}
            format c > ${out_dir}/vmlinux.h.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${out_dir}/vmlinux.h.tmp ${out_dir}/vmlinux.h
    COMMENT "bpftool btf dump -> vmlinux.h"
    VERBATIM)
endfunction()

function(ebpfcni_bpf_skeleton name)
  cmake_parse_arguments(ARG "" "SOURCE;OUT_DIR" "INCLUDES;DEPENDS" ${ARGN})
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
    set(target_arch x86)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
    set(target_arch arm64)
  else()
    set(target_arch ${CMAKE_SYSTEM_PROCESSOR})
  endif()
  set(include_flags)
  foreach(dir ${ARG_INCLUDES})
    list(APPEND include_flags -I${dir})
  endforeach()
  set(object ${ARG_OUT_DIR}/${name}.bpf.o)
  set(skeleton ${ARG_OUT_DIR}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${object}
    COMMAND ${BPF_CLANG_EXECUTABLE} -target bpf -O2 -g -Wall
            -D__TARGET_ARCH_${target_arch} ${include_flags}
            -c ${ARG_SOURCE} -o ${object}
    DEPENDS ${ARG_SOURCE} ${ARG_DEPENDS}
    COMMENT "clang -target bpf ${name}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skeleton}
    COMMAND ${BPFTOOL_EXECUTABLE} gen skeleton ${object} name ${name}
            > ${skeleton}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skeleton}.tmp ${skeleton}
    DEPENDS ${object}
    COMMENT "bpftool gen skeleton ${name}"
    VERBATIM)
  set(${name}_SKELETON ${skeleton} PARENT_SCOPE)
endfunction()
