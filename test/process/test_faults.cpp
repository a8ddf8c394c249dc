// Fault injection with real processes and real signals: see the "faults" suite.
#include <doctest/doctest.h>
