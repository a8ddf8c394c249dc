// Writes the seed corpus of fuzz_decode: a valid encoding of each message type and of each value
// type, one file each, named after what it holds. The files are committed in test/fuzz/corpus/;
// run this again (tools/fuzz.sh --seeds) when the wire changes.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <pymar/codec.hpp>
#include <pymar/mongo/params.hpp>
#include <pymar/sql/params.hpp>
#include <pymar/text/params.hpp>

#include "fuzz/input.hpp"
#include "wire/protocol.hpp"

namespace {

namespace wire = pymar::wire;
using pymar::fuzz::input;
using pymar::fuzz::Target;

std::string directory;

void write(const std::string& name, const std::string& bytes) {
  std::ofstream(directory + "/" + name, std::ios::binary) << bytes;
}

void message(const std::string& name, const wire::Message& m, std::uint8_t frames = 0) {
  write("wire-" + name, input(Target::wire, frames, wire::encode(m)));
}

template <class T>
void value(Target target, const std::string& name, const T& v, std::uint8_t frames = 0) {
  write("value-" + name, input(target, frames, pymar::encode(v)));
}

void envelope(const std::string& name, const std::vector<std::string>& frames) {
  std::uint8_t count = 0;
  const std::string bytes = pymar::fuzz::envelope(frames, count);
  write("envelope-" + name, input(Target::envelope, count, bytes));
}

void raw(const std::string& name, std::uint8_t element_size, pymar::fuzz::RawSizes sizes) {
  write(name, input(Target::raw_payload, element_size, pymar::fuzz::raw_sizes_input(sizes)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_corpus DIRECTORY\n";
    return 2;
  }
  directory = argv[1];

  wire::Ready ready;
  ready.build = "0123456789abcdef/0.1.0";
  ready.task = "test_task";
  ready.host = "node7";
  ready.pid = 4242;
  ready.credit = 2;
  ready.producers = {"DoubleSum<4>", "Integral"};
  ready.sources = {"Scripted", "memory<long>"};
  message("ready", ready);
  ready.predecessor = wire::Predecessor{4241, 11, 0, true, {0x1234567890abcdefULL, 3}, 7};
  message("ready-predecessor", ready);

  wire::Assign assign;
  assign.job = {0x1234567890abcdefULL, 1};
  assign.batch = 5;
  assign.producer = "DoubleSum<4>";
  assign.source = "Scripted";
  assign.params = pymar::encode(pymar::fuzz::Params{10, -1, -1, "", -1, 0, 0, "", false});
  assign.slices = {{0, 0, 3}, {1, 3, 3}};
  message("assign", assign);
  assign.source = "memory<long>";
  assign.params.clear();
  assign.payload = pymar::detail::PayloadKind::raw;
  message("assign-raw", assign, 2);
  assign.source = "memory<std::string>";
  assign.payload = pymar::detail::PayloadKind::msgpack;
  assign.slices = {{2, 6, 4}};
  message("assign-msgpack", assign, 1);

  wire::Result result;
  result.job = {0x1234567890abcdefULL, 1};
  result.batch = 5;
  result.outcomes = {{0, true, 1500, 1, "", ""}};
  message("result", result, 1);
  result.outcomes.push_back(
      {1, false, 900, 0, "std::domain_error", "element 4 is out of the domain"});
  result.outcomes.push_back({2, true, 1200, 1, "", ""});
  message("result-error", result, 2);

  message("heartbeat", wire::Heartbeat{0x1234567890abcdefULL});
  message("bye", wire::Bye{"the worker was asked to stop"});
  message("cancel", wire::Cancel{{0x1234567890abcdefULL, 1}});
  message("cancelled", wire::Cancelled{{0x1234567890abcdefULL, 1}});
  message("refuse", wire::Refuse{"this worker runs build a of 't', the producer runs build b"});
  message("who", wire::Who{});

  // A header of a later protocol version, which decodes only as far as the version.
  msgpack::sbuffer later;
  msgpack::packer<msgpack::sbuffer>(later).pack(std::make_tuple(2, 1, "build"));
  write("wire-version-2", input(Target::wire, 0, std::string(later.data(), later.size())));

  value(Target::int64, "int64", std::int64_t{-1234567890123});
  value(Target::real, "double", 22023.7365011059);
  value(Target::text, "string", std::string("héllo, world"));
  value(Target::int64_vector, "int64-vector", std::vector<std::int64_t>{1, -2, 300000, 1LL << 40});
  value(Target::counts, "counts", std::map<std::string, std::int64_t>{{"w1", 6}, {"w2", 5}});
  pymar::fuzz::Record record{"temperature", {1.5, -2.25}, 2, {{"a", {1, 2}}, {"b", {}}}};
  value(Target::record, "record", record);
  value(Target::nested, "nested",
        std::vector<std::vector<std::vector<std::int64_t>>>{{{1, 2}, {3}}, {}, {{4, 5, 6}}}, 4);
  value(Target::nested, "record-vector", std::vector<pymar::fuzz::Record>{record, {}}, 4);
  value(Target::params, "params",
        pymar::fuzz::Params{1000, 5, -1, "", 2, 1500, 0, "/tmp/m", false});

  // The plugins' source parameters, as their factories fill them.
  pymar::sql::Params sql{.url = "postgresql://pymar@db/numbers",
                         .table = "numbers",
                         .columns = {"i", "label"},
                         .key = "i",
                         .where = "i >= 0",
                         .snapshot = {true, 1000, 0, 999}};
  value(Target::sql_params, "sql-params", sql);
  sql.split = pymar::sql::Split::offset;
  sql.table.clear();
  sql.query = "SELECT i, label FROM numbers JOIN labels USING (i)";
  value(Target::sql_params, "sql-params-query", sql);
  value(Target::text_params, "text-params",
        pymar::text::Params{{"/data/a.txt", "b.txt"}, {1024, 0}});
  value(Target::mongo_params, "mongo-params",
        pymar::mongo::Params{.uri = "mongodb://db",
                             .database = "library",
                             .collection = "books",
                             .filter = R"({"year": {"$gte": 2000}})",
                             .projection = R"({"text": 1})"});

  // Messages as the producer's ROUTER receives them: identity, header, payload frames.
  const std::string id = "node7/4242/1/0123456789abcdef";
  envelope("ready", {id, wire::encode(ready)});
  // Each ok outcome gives its value's size: 90 takes 1 byte, 1.5 takes 9 and "x" 2.
  result.outcomes = {{0, true, 1500, pymar::encode(std::int64_t{90}).size(), "", ""}};
  envelope("result", {id, wire::encode(result), pymar::encode(std::int64_t{90})});
  result.outcomes = {{0, true, 1500, pymar::encode(1.5).size(), "", ""},
                     {1, false, 900, 0, "std::domain_error", "bad \x1b[2J element"},
                     {2, true, 1200, pymar::encode(std::string("x")).size(), "", ""}};
  envelope("result-error",
           {id, wire::encode(result), pymar::encode(1.5), pymar::encode(std::string("x"))});
  // As a worker sends them: both values end to end in one frame.
  envelope("result-one-frame",
           {id, wire::encode(result), pymar::encode(1.5) + pymar::encode(std::string("x"))});
  envelope("heartbeat", {id, wire::encode(wire::Heartbeat{0})});
  envelope("bye", {id, wire::encode(wire::Bye{"stopping"})});
  envelope("status-query", {"status asker", wire::encode(wire::StatusQuery{})});
  envelope("assign", {id, wire::encode(assign), "payload"});  // workers do not send it
  envelope("no-header", {id});

  // Raw slices: exact, a byte short, and a limit whose size wraps around to the payload's.
  raw("raw-exact", 8, {80, 10});
  raw("raw-short", 8, {79, 10});
  raw("raw-wrapping", 8, {16 << 10, (std::uint64_t{1} << 61) + 2048});
  raw("raw-odd-size", 12, {36, 3});
  return 0;
}
