// Where the tests find the project's files and what the build made: given by meson, here only.
#include "support/roots.hpp"

const char* source_root() {
  return PYMAR_SOURCE_ROOT;
}
const char* build_root() {
  return PYMAR_BUILD_ROOT;
}
