# Warning and sanitizer flags applied to every project target through msa_set_warnings(<target>).
# Third-party headers are included as SYSTEM by their imported targets, so they stay quiet.
function(msa_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor>)
  if(MSA_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
  endif()
  if(MSA_SANITIZE)
    string(REPLACE ";" "," _san "${MSA_SANITIZE}")
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${_san} -fno-omit-frame-pointer>)
    target_link_options(${target} PRIVATE -fsanitize=${_san})
  endif()
endfunction()
