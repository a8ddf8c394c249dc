// The project's source folder and the build folder the tests run in (test/support/roots.cpp).
#pragma once

const char* source_root();
const char* build_root();
