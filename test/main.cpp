// The doctest runner of every test binary.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>

int main(int argc, char** argv) {
  // doctest::timeout(N) fails a test that ran longer than N s. A build that runs everything
  // slower (the sanitizers', CI's busy hosts) sets PYMAR_TEST_TIME_SCALE, which stretches the
  // tests' own waits (test/support/process.hpp: scaled) and meson's --timeout-multiplier: it
  // stretches these limits alike. tools/test.sh sets both from one number.
  const char* text = std::getenv("PYMAR_TEST_TIME_SCALE");
  const double scale = text != nullptr ? std::strtod(text, nullptr) : 1.0;
  if (scale > 1.0) {
    // The registry is a std::set ordered by file, line and name: the timeout is not part of
    // the order, so changing it in place keeps the set valid.
    for (const doctest::detail::TestCase& test : doctest::detail::getRegisteredTests()) {
      const_cast<doctest::detail::TestCase&>(test).m_timeout *= scale;
    }
  }
  return doctest::Context(argc, argv).run();
}
