#[[
Check that the Slicer extension metadata in RadiomicsLab's top-level CMakeLists.txt is complete.

  cmake -DEXTENSION_DIR=<repository root> [-DCMAKELISTS=<file>] [-DRAW_URL_PREFIX=<url>] -P CheckExtensionMetadata.cmake

The set(EXTENSION_...) commands written before find_package(Slicer) (where Slicer's extension template
puts them, so that UseSlicer.cmake does not replace them with its defaults) are evaluated as CMake
code, then:
 - each of REQUIRED_VARIABLES is set, not empty and not a placeholder (Slicer's template values,
   TODO/FIXME); no TODO/FIXME is left in the meta-information block;
 - EXTENSION_ENABLED is 0 or 1, EXTENSION_HOMEPAGE an https:// URL, and EXTENSION_CONTRIBUTORS "Name (Organization)"
   entries separated by commas (SlicerExtensionDescriptionSpec.cmake);
 - EXTENSION_ICONURL and every URL of EXTENSION_SCREENSHOTURLS start with RAW_URL_PREFIX and, with that
   prefix replaced by EXTENSION_DIR, name an image file of the repository; the icon is a 128 x 128 PNG
   (Slicer, Extensions/CMake/SlicerExtensionDescriptionSpec.cmake: "Url to an icon (png, size 128x128 pixels)");
 - EXTENSION_SCREENSHOTURLS must be set but may be empty: Slicer's spec makes it optional (default ""), and the
   extension has no screenshots of desktop Slicer yet (none can be taken where it is developed; the web GUI's
   screenshots would misrepresent the extension). Screenshot URLs that are given are checked as above.
   Submitting to Slicer's ExtensionsIndex needs them: its scripts/check_description_files.py fails with
   "No EXTENSION_SCREENSHOTURLS found in CMakeLists.txt."
All problems are reported together in one FATAL_ERROR (exit status 1); on success the values are printed.
]]
cmake_minimum_required(VERSION 3.18) # cmake_language(EVAL)

if(NOT DEFINED EXTENSION_DIR)
  message(FATAL_ERROR "Give the repository root: cmake -DEXTENSION_DIR=<folder> -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
get_filename_component(EXTENSION_DIR "${EXTENSION_DIR}" ABSOLUTE)
if(NOT DEFINED CMAKELISTS)
  set(CMAKELISTS "${EXTENSION_DIR}/CMakeLists.txt")
endif()
if(NOT DEFINED RAW_URL_PREFIX)
  set(RAW_URL_PREFIX "https://raw.githubusercontent.com/RadiomicsLab/RadiomicsLab/main/")
endif()
if(NOT EXISTS "${CMAKELISTS}")
  message(FATAL_ERROR "${CMAKELISTS} does not exist; give -DEXTENSION_DIR=<repository root> (or -DCMAKELISTS=<file>).")
endif()

# Metadata Slicer's extension catalogue shows (SlicerExtensionDescriptionSpec.cmake, SlicerExtensionCPack.cmake).
set(REQUIRED_VARIABLES
  EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION
  EXTENSION_ICONURL EXTENSION_SCREENSHOTURLS EXTENSION_STATUS EXTENSION_ENABLED EXTENSION_DEPENDS)
# Set, but may be empty (see above).
set(MAY_BE_EMPTY EXTENSION_SCREENSHOTURLS)
# Values copied from Slicer's extension template (Utilities/Templates/Extensions/Default/CMakeLists.txt) or left to do.
set(PLACEHOLDER_REGEX "TODO|FIXME|TBD|John Doe|AnyWare Corp|example\\.com|TemplateKey|This is an example")

set(problems "")
macro(problem text)
  string(APPEND problems "\n  - ${text}")
endmacro()

file(READ "${CMAKELISTS}" content)
# Keep what comes before the first find_package(Slicer ...) command (CMake's "." matches newlines too).
string(REGEX REPLACE "(^|\n)[ \t]*find_package\\([ \t\n]*Slicer[ \t\n)].*" "" head "${content}")
if(head STREQUAL content)
  problem("no find_package(Slicer ...) in ${CMAKELISTS}")
endif()
set(content "${head}")
string(FIND "${content}" "Extension meta-information" block_at)
if(NOT block_at EQUAL -1)
  string(SUBSTRING "${content}" ${block_at} -1 block)
  if(block MATCHES "(TODO|FIXME)[^\n]*")
    problem("left to do in the extension meta-information: '${CMAKE_MATCH_0}'")
  endif()
endif()

# Drop comment lines, then evaluate each set(EXTENSION_...) command (quoted arguments may hold parentheses).
string(REGEX REPLACE "(^|\n)[ \t]*#[^\n]*" "\\1" content "${content}")
string(REGEX MATCHALL "set\\(EXTENSION_[A-Z_]+([^\"()]|\"[^\"]*\")*\\)" commands "${content}")
foreach(variable IN LISTS REQUIRED_VARIABLES)
  unset(${variable})
endforeach()
foreach(command IN LISTS commands)
  cmake_language(EVAL CODE "${command}")
endforeach()

foreach(variable IN LISTS REQUIRED_VARIABLES)
  if(NOT DEFINED ${variable})
    problem("${variable} is not set (set(${variable} ...) before find_package(Slicer))")
  elseif("${${variable}}" MATCHES "^[ \t\n]*$")
    if(NOT variable IN_LIST MAY_BE_EMPTY)
      problem("${variable} is empty")
    endif()
  elseif("${${variable}}" MATCHES "${PLACEHOLDER_REGEX}")
    problem("${variable} is a placeholder ('${CMAKE_MATCH_0}'): '${${variable}}'")
  endif()
endforeach()

if(DEFINED EXTENSION_ENABLED AND NOT "${EXTENSION_ENABLED}" MATCHES "^[01]$")
  problem("EXTENSION_ENABLED must be 0 or 1, not '${EXTENSION_ENABLED}'")
endif()
# SlicerExtensionDescriptionSpec.cmake: "Firstname1 Lastname1 ([SubOrg1, ]Org1), Firstname2 Lastname2 ([SubOrg2, ]Org2)".
if(DEFINED EXTENSION_CONTRIBUTORS AND NOT "${EXTENSION_CONTRIBUTORS}" MATCHES "^[ \t\n]*$")
  string(REGEX REPLACE "[ \t\n]*[^(),]*[^(), \t\n][ \t\n]+\\([^()]*[^() \t\n][^()]*\\)[ \t\n]*(,|$)" "" unmatched "${EXTENSION_CONTRIBUTORS}")
  if(NOT unmatched STREQUAL "")
    problem("EXTENSION_CONTRIBUTORS must be 'Name (Organization)' entries separated by commas, not '${EXTENSION_CONTRIBUTORS}'")
  endif()
endif()
if(DEFINED EXTENSION_HOMEPAGE AND NOT "${EXTENSION_HOMEPAGE}" MATCHES "^https://[^ \t\n]+$")
  problem("EXTENSION_HOMEPAGE must be one https:// URL, not '${EXTENSION_HOMEPAGE}'")
endif()

# check_image_url(<variable> <url> <png 128x128: TRUE/FALSE>): the URL names an image file of this repository.
function(check_image_url variable url icon)
  string(LENGTH "${RAW_URL_PREFIX}" prefix_length)
  string(FIND "${url}" "${RAW_URL_PREFIX}" prefix_at)
  if(NOT prefix_at EQUAL 0)
    set(problems "${problems}\n  - ${variable}: '${url}' does not start with ${RAW_URL_PREFIX} (a file of this repository)" PARENT_SCOPE)
    return()
  endif()
  string(SUBSTRING "${url}" ${prefix_length} -1 relative)
  set(path "${EXTENSION_DIR}/${relative}")
  if(relative STREQUAL "" OR NOT EXISTS "${path}" OR IS_DIRECTORY "${path}")
    set(problems "${problems}\n  - ${variable}: '${url}' names ${relative}, which is not a file in ${EXTENSION_DIR}" PARENT_SCOPE)
    return()
  endif()
  if(NOT relative MATCHES "\\.(png|jpg|jpeg|gif)$")
    set(problems "${problems}\n  - ${variable}: ${relative} is not a .png, .jpg or .gif image" PARENT_SCOPE)
    return()
  endif()
  if(icon)
    # PNG: 8-byte signature, then the IHDR chunk (length, "IHDR", width, height as 4-byte big-endian integers).
    file(READ "${path}" header LIMIT 24 HEX)
    string(SUBSTRING "${header}" 0 16 signature)
    if(NOT signature STREQUAL "89504e470d0a1a0a")
      set(problems "${problems}\n  - ${variable}: ${relative} is not a PNG file" PARENT_SCOPE)
      return()
    endif()
    string(SUBSTRING "${header}" 32 8 width)
    string(SUBSTRING "${header}" 40 8 height)
    math(EXPR width "0x${width}")
    math(EXPR height "0x${height}")
    if(NOT width EQUAL 128 OR NOT height EQUAL 128)
      set(problems "${problems}\n  - ${variable}: ${relative} is ${width} x ${height} pixels; Slicer expects a 128 x 128 icon" PARENT_SCOPE)
    endif()
  endif()
endfunction()

if(DEFINED EXTENSION_ICONURL AND NOT "${EXTENSION_ICONURL}" STREQUAL "")
  string(STRIP "${EXTENSION_ICONURL}" icon_url)
  check_image_url(EXTENSION_ICONURL "${icon_url}" TRUE)
endif()
if(DEFINED EXTENSION_SCREENSHOTURLS)
  string(REGEX MATCHALL "[^ \t\n;]+" screenshot_urls "${EXTENSION_SCREENSHOTURLS}")
  foreach(url IN LISTS screenshot_urls)
    check_image_url(EXTENSION_SCREENSHOTURLS "${url}" FALSE)
  endforeach()
endif()

if(NOT problems STREQUAL "")
  message(FATAL_ERROR "Extension metadata in ${CMAKELISTS} is incomplete:${problems}")
endif()
foreach(variable IN LISTS REQUIRED_VARIABLES)
  message(STATUS "${variable}: ${${variable}}")
endforeach()
message(STATUS "Extension metadata complete (${CMAKELISTS})")
