// Hostile and broken input on real sockets: see the "hostile" suite.
#include <doctest/doctest.h>
