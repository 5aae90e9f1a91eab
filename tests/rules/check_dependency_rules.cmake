# check_dependency_rules.cmake: enforces DESIGN.md §2 on a source tree.
#   core/ includes no Qt header and no CUDA header; gpu/ includes no Qt header; ui/ includes no gpu/ header.
# Usage: cmake -DROOT=<tree> [-DEXPECT=<n>] -P check_dependency_rules.cmake
# Without EXPECT the check fails on any violation (the real tree). With EXPECT it fails unless exactly n
# violations are found (the fixture tree, which proves the check can fail).
if(NOT ROOT)
  message(FATAL_ERROR "pass -DROOT=<source tree>")
endif()
set(_qt "^[ \t]*#[ \t]*include[ \t]*[<\"](Q[A-Za-z0-9_]+|Qt[A-Za-z0-9_]+/|qcustomplot)")
set(_cuda "^[ \t]*#[ \t]*include[ \t]*[<\"](cuda|cublas|cuda_runtime|nccl|cub/|thrust/)")
set(_gpu "^[ \t]*#[ \t]*include[ \t]*[<\"](\\.\\./)*gpu/")
set(_violations "")
set(_n 0)

function(_scan dir regex what)
  file(GLOB_RECURSE _files "${ROOT}/${dir}/*.h" "${ROOT}/${dir}/*.hpp" "${ROOT}/${dir}/*.cpp"
       "${ROOT}/${dir}/*.cu" "${ROOT}/${dir}/*.cuh" "${ROOT}/${dir}/*.in")
  foreach(f IN LISTS _files)
    file(STRINGS "${f}" _lines REGEX "${regex}")
    foreach(l IN LISTS _lines)
      file(RELATIVE_PATH _rel "${ROOT}" "${f}")
      string(STRIP "${l}" l)
      set(_violations "${_violations}\n  ${_rel}: ${what}: ${l}" PARENT_SCOPE)
      math(EXPR _n "${_n} + 1")
      set(_n ${_n} PARENT_SCOPE)
    endforeach()
  endforeach()
endfunction()

_scan(core "${_qt}" "core/ must not include Qt")
_scan(core "${_cuda}" "core/ must not include CUDA")
_scan(gpu "${_qt}" "gpu/ must not include Qt")
_scan(ui "${_gpu}" "ui/ must not include gpu/ headers")

if(DEFINED EXPECT)
  if(NOT _n EQUAL EXPECT)
    message(FATAL_ERROR "expected ${EXPECT} violations in ${ROOT}, found ${_n}:${_violations}")
  endif()
  message(STATUS "found the ${_n} expected violations:${_violations}")
elseif(_n GREATER 0)
  message(FATAL_ERROR "dependency rules broken (${_n}):${_violations}")
else()
  message(STATUS "dependency rules hold in ${ROOT}")
endif()
