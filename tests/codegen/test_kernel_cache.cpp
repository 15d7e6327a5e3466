// The disk cache of compiled kernels (codegen/kernel_cache.h): its key follows everything that
// shapes the code, its folder is capped and must be the user's alone, and failing to write it
// costs only a warning.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>

#include "codegen/jit_support.h"
#include "dagger/codegen/kernel_cache.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

/// What this process writes to stderr while `f` runs (through a pipe, so that a file size
/// limit set by `f` does not apply to it).
template <class F>
std::string stderr_of(F&& f) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(stderr);
  const int saved = ::dup(2);
  ::dup2(fds[1], 2);
  ::close(fds[1]);
  f();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<size_t>(n));
  ::close(fds[0]);
  return text;
}

/// y = tanh(a * b) on [13, 7]: one small kernel.
struct SmallPlan {
  Graph g;
  StateMap feeds{{"a", uniform({13, 7}, -1, 1, 1)}, {"b", uniform({13, 7}, -1, 1, 2)}};
  SmallPlan() {
    g.set_output("y", g.add(Op::tanh, {g.add(Op::mul, {input(g, "a", {13, 7}), input(g, "b", {13, 7})})}));
  }
  /// Compiles and runs the plan; returns y and how many kernels came from the cache.
  std::pair<Tensor, int> run() const {
    auto plan = compile_jit(g);
    StateMap none;
    return {plan->run(feeds, none).at("y"), plan->compile_stats().cache_hits};
  }
};

std::vector<std::string> files_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("the kernel cache key changes with the target and holds every setting that shapes code", "[jit][cache]") {
  const Jit host(jit_target_named("host"), false, 1), v3(jit_target_named("x86-64-v3"), false, 1);
  CHECK(host.code_settings() != v3.code_settings());
  for (const char* part : {"dagger-kernel-v3\n", "LLVM 19.", "cpu x86-64-v3\n", "codegen opt level 3", "fp-contract ",
                           "float-abi ", "no-signed-zeros ", "denormal ", "relocation model ", "subtarget features ",
                           "pipeline ", "instcombine", "loop-vectorize"}) {
    INFO(part);
    CHECK(v3.code_settings().find(part) != std::string::npos);
  }
  CHECK(v3.code_settings().find("avx512f,") == std::string::npos);
  CHECK(v3.code_settings().find("avx2,") != std::string::npos);

  // The same graph under another target is another kernel: compiled, not taken from the cache.
  TempDir dir("kernel-cache-key");
  ScopedEnv cache("DAGGER_CACHE_DIR", dir.path.string());
  const SmallPlan small;
  std::pair<Tensor, int> first, other, again;
  {
    ScopedEnv target("DAGGER_TARGET", "x86-64-v3");
    first = small.run();
  }
  other = small.run();  // the host
  {
    ScopedEnv target("DAGGER_TARGET", "x86-64-v3");
    again = small.run();
  }
  CHECK(first.second == 0);
  CHECK(other.second == 0);
  CHECK(again.second == 1);
  CHECK(files_in(dir.path).size() == 2);
  CHECK(bitwise_equal(first.first, other.first));
  CHECK(bitwise_equal(first.first, again.first));
}

TEST_CASE("the kernel cache keeps its cap by removing the least recently used entries", "[jit][cache]") {
  TempDir dir("kernel-cache-cap");
  const std::string folder = dir.file("kernels");
  KernelCache cache(folder, 1 << 20);
  REQUIRE(cache.enabled());
  struct stat st {};
  REQUIRE(::stat(folder.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);  // created private

  const std::string payload(300 << 10, 'x');
  const auto now = std::filesystem::file_time_type::clock::now();
  for (int k = 0; k < 5; ++k) {  // k0 oldest ... k4 newest
    cache.store("k" + std::to_string(k), payload);
    std::filesystem::last_write_time(folder + "/k" + std::to_string(k) + ".o", now - std::chrono::hours(10 - k));
  }
  // A writer that died long ago left a temporary file; one writing now has one too.
  std::ofstream(folder + "/k9.o.1.0.tmp") << "partial";
  std::filesystem::last_write_time(folder + "/k9.o.1.0.tmp", now - std::chrono::hours(2));
  std::ofstream(folder + "/k8.o.2.0.tmp") << "partial";

  CHECK(cache.load("k0") == payload);  // used now: the newest
  cache.evict();
  CHECK(files_in(folder) == std::vector<std::string>{"k0.o", "k3.o", "k4.o", "k8.o.2.0.tmp"});
  uintmax_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) total += entry.file_size();
  CHECK(total <= (1u << 20));

  // An entry whose bytes changed fails its checksum and is not used.
  {
    std::fstream f(folder + "/k3.o", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    f.put('y');
  }
  CHECK_FALSE(cache.load("k3").has_value());
  CHECK(cache.load("k4") == payload);
}

TEST_CASE("a kernel cache folder others can write to is not used, with one warning", "[jit][cache]") {
  TempDir dir("kernel-cache-open");
  REQUIRE(::chmod(dir.path.c_str(), 0777) == 0);
  const std::string warning = stderr_of([&] { CHECK_FALSE(KernelCache(dir.path.string(), 1 << 20).enabled()); });
  CHECK(warning == fmt::format("warning: kernel cache {}: is writable by group or others (mode 777; chmod 700 it); "
                               "compiling without it\n",
                               dir.path.string()));
  // A plan compiles and runs without it, writing nothing there and warning no more.
  ScopedEnv cache("DAGGER_CACHE_DIR", dir.path.string());
  const SmallPlan small;
  std::pair<Tensor, int> run;
  CHECK(stderr_of([&] { run = small.run(); }).empty());
  CHECK(files_in(dir.path).empty());
  StateMap none;
  CHECK(max_rel_error(run.first, interpret<float>(small.g, small.feeds, none).at("y")) < 1e-6);

  if (::geteuid() == 0) {  // only root can give a folder away
    TempDir theirs("kernel-cache-theirs");
    REQUIRE(::chown(theirs.path.c_str(), 65534, 65534) == 0);
    const std::string message = stderr_of([&] { CHECK_FALSE(KernelCache(theirs.path.string(), 1 << 20).enabled()); });
    CHECK_THAT(message, Catch::Contains("is owned by another user (uid 65534)"));
  }
}

TEST_CASE("a kernel cache write that fails (a full disk) only warns, leaves no file and changes no result",
          "[jit][cache]") {
  TempDir dir("kernel-cache-full");
  ScopedEnv cache("DAGGER_CACHE_DIR", dir.path.string());
  const SmallPlan small;
  StateMap none;
  const Tensor want = interpret<float>(small.g, small.feeds, none).at("y");
  // A file size limit makes every write past 512 bytes fail with EFBIG, as a full disk fails
  // with ENOSPC (the signal the kernel would send instead is ignored).
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  std::pair<Tensor, int> run;
  const std::string warning = stderr_of([&] {
    rlimit tiny{512, old.rlim_max};
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &tiny) == 0);
    run = small.run();
    ::setrlimit(RLIMIT_FSIZE, &old);
  });
  std::signal(SIGXFSZ, old_handler);
  CHECK(warning == fmt::format("warning: kernel cache {}: cannot save compiled kernels (File too large); later runs "
                               "will compile them again\n",
                               dir.path.string()));
  CHECK(files_in(dir.path).empty());  // neither an entry nor a temporary file
  CHECK(max_rel_error(run.first, want) < 1e-6);
  // With room again, the next run saves the kernel.
  CHECK(small.run().second == 0);
  CHECK(files_in(dir.path).size() == 1);
  CHECK(small.run().second == 1);
}

TEST_CASE("a kernel that differs in any input of its emitter is never the cache's hit for another", "[jit][cache]") {
  // y = dropout(leaky_relu(a * b, alpha), key): one kernel. Each variant changes one thing the
  // emitter reads; all compile into one folder, so a key blind to that thing would make a
  // later variant load an earlier one's code (a silent wrong result).
  struct Variant {
    const char* what;
    Shape shape;
    double alpha;
    int64_t salt;
    int width;
  };
  const std::vector<Variant> variants = {
      {"the first", {13, 7}, 0.3, 5, 0},
      {"alpha one float step larger", {13, 7}, std::nextafter(0.3f, 1.0f), 5, 0},
      {"another dropout salt", {13, 7}, 0.3, 6, 0},
      {"another shape", {13, 8}, 0.3, 5, 0},
      {"another vector width", {13, 7}, 0.3, 5, 4},
  };
  TempDir dir("kernel-cache-inputs");
  ScopedEnv cache("DAGGER_CACHE_DIR", dir.path.string());
  auto compile = [](const Variant& v) {
    Graph g;
    const NodeId product = g.add(Op::mul, {input(g, "a", v.shape), input(g, "b", v.shape)});
    const NodeId activated = g.add(Op::leaky_relu, {product}, {{"alpha", v.alpha}});
    g.set_output("y", g.add(Op::dropout, {activated, input(g, "key", {})}, {{"p", 0.5}, {"salt", v.salt}}));
    JitOptions options;
    options.vector_width = v.width;
    auto plan = compile_jit(g, options);
    const StateMap feeds{
        {"a", uniform(v.shape, -1, 1, 1)}, {"b", uniform(v.shape, -1, 1, 2)}, {"key", scalar_tensor(7)}};
    StateMap none;
    return std::make_pair(plan->run(feeds, none).at("y"), plan->compile_stats().cache_hits);
  };
  std::vector<Tensor> cold;
  for (const Variant& v : variants) {
    INFO(v.what);
    const auto [y, hits] = compile(v);
    CHECK(hits == 0);
    cold.push_back(y);
  }
  CHECK(files_in(dir.path).size() == variants.size());
  for (size_t k = 0; k < variants.size(); ++k) {  // and each finds its own code again
    INFO(variants[k].what);
    const auto [y, hits] = compile(variants[k]);
    CHECK(hits == 1);
    CHECK(bitwise_equal(y, cold[k]));
  }
}
