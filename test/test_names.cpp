// Names shown to users (sources of data in memory, exception types) read as the user wrote them.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <typeinfo>
#include <vector>

#include "common/registry.hpp"

using pymar::detail::readable_type_name;

TEST_CASE("library spellings of standard types read as the user wrote them") {
  CHECK(readable_type_name(
            "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >") ==
        "std::string");
  CHECK(readable_type_name("std::vector<int, std::allocator<int> >") == "std::vector<int>");
  CHECK(readable_type_name("std::vector<std::vector<double, std::allocator<double> >, "
                           "std::allocator<std::vector<double, std::allocator<double> > > >") ==
        "std::vector<std::vector<double>>");
  CHECK(readable_type_name(
            "std::map<std::__cxx11::basic_string<char, std::char_traits<char>, "
            "std::allocator<char> >, long, std::less<std::__cxx11::basic_string<char, "
            "std::char_traits<char>, std::allocator<char> > >, "
            "std::allocator<std::pair<std::__cxx11::basic_string<char, std::char_traits<char>, "
            "std::allocator<char> > const, long> > >") == "std::map<std::string, long>");
  CHECK(readable_type_name("std::__1::basic_string_view<char, std::char_traits<char> >") ==
        "std::string_view");
  CHECK(readable_type_name("Points") == "Points");
  CHECK(readable_type_name("pymar::sum<__int128>") == "pymar::sum<__int128>");
  CHECK(readable_type_name("std::runtime_error") == "std::runtime_error");
}

TEST_CASE("the names the registry gives types are readable") {
  CHECK(pymar::detail::type_name(typeid(std::string)) == "std::string");
  CHECK(pymar::detail::type_name(typeid(std::vector<std::string>)) == "std::vector<std::string>");
  CHECK(pymar::detail::type_name(typeid(std::map<std::string, int>)) ==
        "std::map<std::string, int>");
}
