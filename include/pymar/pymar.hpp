// Pymar: write a Producer and a DataSource, register them, and `map` a job over many machines.
#pragma once

#include "pymar/detail/config.hpp"

#include "pymar/algorithm.hpp"
#include "pymar/codec.hpp"
#include "pymar/data_source.hpp"
#include "pymar/error.hpp"
#include "pymar/factory.hpp"
#include "pymar/main.hpp"
#include "pymar/producer.hpp"
#include "pymar/pull_range.hpp"
#include "pymar/registry.hpp"
#include "pymar/stats.hpp"
#include "pymar/version.hpp"
