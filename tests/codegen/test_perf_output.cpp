// What the JIT tells perf about its kernels (codegen/jit.h, PerfOutput): with DAGGER_PERF=jitdump
// every kernel of a plan appears in /tmp/perf-PID.map and in /tmp/jit-PID.dump under its name,
// and the dump's code is the code at that address in this process.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <map>
#include <sstream>

#include "codegen/jit_support.h"
#include "dagger/codegen/jit.h"
#include "dagger/codegen/jit_executable.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

TEST_CASE("DAGGER_PERF names what perf is told, and refuses anything else", "[jit]") {
  {
    ScopedEnv env("DAGGER_PERF", "");
    CHECK(perf_output() == PerfOutput::none);
  }
  {
    ScopedEnv env("DAGGER_PERF", "off");
    CHECK(perf_output() == PerfOutput::none);
  }
  {
    ScopedEnv env("DAGGER_PERF", "map");
    CHECK(perf_output() == PerfOutput::map);
  }
  {
    ScopedEnv env("DAGGER_PERF", "jitdump");
    CHECK(perf_output() == PerfOutput::jitdump);
  }
  ScopedEnv env("DAGGER_PERF", "perf");
  CHECK_THROWS_WITH(perf_output(), "DAGGER_PERF=perf: unknown output (valid: off, map, jitdump)");
  CHECK_THROWS_WITH(Jit(false, 1), "DAGGER_PERF=perf: unknown output (valid: off, map, jitdump)");
}

namespace {

template <class T>
T read_at(const std::string& bytes, size_t at) {
  T value;
  REQUIRE(at + sizeof(T) <= bytes.size());
  std::memcpy(&value, bytes.data() + at, sizeof(T));
  return value;
}

}  // namespace

TEST_CASE("with DAGGER_PERF=jitdump each kernel is in perf's map and jitdump with the code it runs", "[jit]") {
  const std::string map_path = "/tmp/perf-" + std::to_string(::getpid()) + ".map";
  const std::string dump_path = "/tmp/jit-" + std::to_string(::getpid()) + ".dump";
  struct Removed {  // the files, whatever the checks say
    const std::string& a;
    const std::string& b;
    ~Removed() {
      ::unlink(a.c_str());
      ::unlink(b.c_str());
    }
  } removed{map_path, dump_path};
  // A fresh cache, so that the kernels are compiled here rather than found on disk: a kernel
  // loaded from the cache is linked the same way, but this way the test does not depend on it.
  TempDir cache;
  ScopedEnv cache_env("DAGGER_CACHE_DIR", cache.path.string());
  ScopedEnv env("DAGGER_PERF", "jitdump");
  Graph g;
  const NodeId x = input(g, "x", {5, 7});
  const NodeId w = input(g, "w", {7, 3});
  g.set_output("y", g.add(Op::relu, {g.add(Op::matmul, {x, w})}));
  g.set_output("s", g.add(Op::exp, {input(g, "z", {100})}));
  JitOptions options;
  auto jit = compile_jit(g, options);
  StateMap state;
  jit->run({{"x", uniform({5, 7}, -1, 1, 1)}, {"w", uniform({7, 3}, -1, 1, 2)}, {"z", uniform({100}, -1, 1, 3)}},
           state);
  REQUIRE(jit->kernels().size() == 2);

  // The map: "ADDRESS SIZE NAME" per kernel, hexadecimal.
  std::map<std::string, std::pair<uint64_t, uint64_t>> mapped;
  std::istringstream map_lines(file_bytes(map_path));
  for (std::string line; std::getline(map_lines, line);) {
    std::istringstream fields(line);
    uint64_t address = 0, size = 0;
    std::string name;
    fields >> std::hex >> address >> size >> name;
    mapped[name] = {address, size};
  }
  for (const KernelInfo& k : jit->kernels()) {
    INFO(k.name);
    REQUIRE(mapped.contains(k.name));
    CHECK(mapped[k.name].second > 0);
  }

  // The dump: a 40-byte header, then JIT_CODE_LOAD records (id 0) with the name and the code.
  const std::string dump = file_bytes(dump_path);
  CHECK(read_at<uint32_t>(dump, 0) == 0x4A695444);  // "JiTD"
  CHECK(read_at<uint32_t>(dump, 4) == 1);
  CHECK(read_at<uint32_t>(dump, 8) == 40);
  CHECK(read_at<uint32_t>(dump, 20) == static_cast<uint32_t>(::getpid()));
  CHECK(read_at<uint64_t>(dump, 32) == 0);  // flags: CLOCK_MONOTONIC timestamps
  size_t found = 0;
  for (size_t at = 40; at < dump.size();) {
    const auto id = read_at<uint32_t>(dump, at);
    const auto total = read_at<uint32_t>(dump, at + 4);
    REQUIRE(id == 0);
    REQUIRE(total > 56);
    const auto address = read_at<uint64_t>(dump, at + 24);
    const auto size = read_at<uint64_t>(dump, at + 40);
    const std::string name(dump.c_str() + at + 56);
    const size_t code = at + 56 + name.size() + 1;
    REQUIRE(code + size == at + total);
    if (mapped.contains(name) && mapped[name].first == address) {
      INFO(name);
      CHECK(size == mapped[name].second);
      // The code this process runs at that address.
      CHECK(std::memcmp(dump.data() + code, reinterpret_cast<const void*>(address), size) == 0);
      ++found;
    }
    at += total;
  }
  CHECK(found >= jit->kernels().size());
}
