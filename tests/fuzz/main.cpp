// dagger-fuzz TARGET: mutates the target's corpus with a fixed seed and runs every input through
// its parsers. An input may be accepted or refused with a dagger::Error; any other exception,
// a crash, an input running longer than --timeout or an allocation above --max-alloc-mb ends
// the run with exit 1, the input saved to --save. Exit 0: every input ended cleanly.
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>

#include "fuzz.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace fs = std::filesystem;
using dagger::fuzz::Bytes;
using dagger::fuzz::Target;

namespace {

// ---- What a fatal signal or sanitizer report needs: plain globals, written before each input.

const Bytes* g_input = nullptr;
char g_save_path[4096] = "";
size_t g_max_allocation = 0;  // bytes; 0 until the run starts, so setup allocates freely

/// Writes the current input to --save; async-signal-safe (open, write, close only).
void save_current_input() {
  if (g_input == nullptr || g_save_path[0] == '\0') return;
  const int fd = ::open(g_save_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < g_input->size()) {
    const ssize_t n = ::write(fd, g_input->data() + done, g_input->size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

void say(const char* text) {
  const ssize_t ignored = ::write(2, text, std::strlen(text));
  (void)ignored;
}

void on_fatal_signal(int signal) {
  say(signal == SIGALRM ? "dagger-fuzz: an input ran longer than --timeout\n"
                        : "dagger-fuzz: an input crashed the parser (fatal signal)\n");
  save_current_input();
  if (g_save_path[0] != '\0') say("dagger-fuzz: the input is saved to --save\n");
  ::signal(signal, SIG_DFL);
  if (signal == SIGALRM) ::_exit(1);
  ::raise(signal);
}

void install_handlers() {
  ::signal(SIGALRM, on_fatal_signal);
  ::signal(SIGABRT, on_fatal_signal);
#if defined(__SANITIZE_ADDRESS__)
  // ASan and UBSan report and exit through their own handlers; save the input on the way out.
  __sanitizer_set_death_callback([] { save_current_input(); });
#else
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::signal(s, on_fatal_signal);
#endif
}

Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<Bytes> read_corpus(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());  // directory order differs between file systems
  std::vector<Bytes> corpus;
  for (const fs::path& f : files) corpus.push_back(read_bytes(f));
  return corpus;
}

struct Options {
  std::string target, corpus, save;
  std::vector<std::string> replay;
  uint64_t inputs = 100000, seed = 1;
  double seconds = 0;
  unsigned timeout = 10;
  size_t max_size = 1 << 20, max_alloc_mb = 256, pool_cap = 512;
};

/// One input through the target; false (after a report) when it ended in anything but success
/// or a dagger::Error.
bool run_one(const Target& target, const Bytes& input, uint64_t index, bool& accepted, const Options& o) {
  g_input = &input;
  ::alarm(o.timeout);
  try {
    accepted = target.run(input);
  } catch (const std::exception& e) {
    ::alarm(0);
    fmt::print(stderr, "dagger-fuzz: {} input {} escaped as {}: {}\n", target.name, index, typeid(e).name(), e.what());
    save_current_input();
    return false;
  } catch (...) {
    ::alarm(0);
    fmt::print(stderr, "dagger-fuzz: {} input {} threw something that is not a std::exception\n", target.name, index);
    save_current_input();
    return false;
  }
  ::alarm(0);
  return true;
}

int fuzz(const Target& target, const Options& o) {
  std::vector<Bytes> pool =
      read_corpus(o.corpus.empty() ? fs::path(DAGGER_FUZZ_DIR) / "corpus" / target.name : fs::path(o.corpus));
  if (pool.empty()) throw std::runtime_error(fmt::format("no corpus files for {}", target.name));
  const dagger::fuzz::Mutator mutator(target, o.max_size);
  const size_t seeds = pool.size();
  uint64_t done = 0, accepted_count = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  for (; done < o.inputs && (o.seconds <= 0 || elapsed() < o.seconds); ++done) {
    // Each input has its own generator, so input k depends only on the seed, k and the pool.
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + done);
    const Bytes input = done < seeds ? pool[done] : mutator.mutate(pool[rng() % pool.size()], pool, rng);
    bool accepted = false;
    if (!run_one(target, input, done, accepted, o)) return 1;
    accepted_count += accepted;
    // Accepted variants join the pool (up to a cap): they reach deeper than the seeds alone.
    if (accepted && done >= seeds && pool.size() < o.pool_cap) pool.push_back(input);
  }
  const double s = elapsed();
  fmt::print("{}: {} inputs clean in {:.1f} s ({:.0f} inputs/s), {} accepted, {} refused with a dagger::Error\n",
             target.name, done, s, done / std::max(s, 1e-9), accepted_count, done - accepted_count);
  return 0;
}

int replay(const Target& target, const Options& o) {
  for (const std::string& file : o.replay) {
    const Bytes input = read_bytes(file);
    bool accepted = false;
    if (!run_one(target, input, 0, accepted, o)) return 1;
    fmt::print("{}: {} {}\n", target.name, file, accepted ? "accepted" : "refused with a dagger::Error");
  }
  return 0;
}

}  // namespace

// Without ASan (which bounds allocations itself, see scripts/sanitize.sh), every allocation of
// the process passes this check while inputs run: a parser that trusts a size from a header
// fails the run here instead of exhausting the machine.
#if !defined(__SANITIZE_ADDRESS__)
void* operator new(size_t size) {
  if (g_max_allocation != 0 && size > g_max_allocation) {
    char line[160];
    std::snprintf(line, sizeof line, "dagger-fuzz: an input asked for %zu bytes, above --max-alloc-mb\n", size);
    say(line);
    save_current_input();
    std::_Exit(1);
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
// The default operator delete (libstdc++'s) frees with free(), which matches the malloc above.
#endif

int main(int argc, char** argv) {
  Options o;
  CLI::App app("dagger-fuzz: deterministic mutation fuzzing of dagger's file parsers (docs/testing.md)");
  app.add_option("target", o.target, "idx | npy | csv | manifest | checkpoint-npy | model-text | ir")->required();
  app.add_option("--inputs", o.inputs, "number of inputs, the corpus files first");
  app.add_option("--seconds", o.seconds, "stop after this long even if --inputs are not done (0: no limit)");
  app.add_option("--seed", o.seed, "seed of the mutations: a seed and --inputs fix every input");
  app.add_option("--corpus", o.corpus, "folder of seed inputs (default: tests/fuzz/corpus/TARGET)");
  app.add_option("--save", o.save, "where to write an input that fails");
  app.add_option("--timeout", o.timeout, "seconds one input may take");
  app.add_option("--max-size", o.max_size, "largest input in bytes");
  app.add_option("--max-alloc-mb", o.max_alloc_mb, "largest single allocation an input may cause (without ASan)");
  app.add_option("--replay", o.replay, "run these files through the target instead of fuzzing");
  CLI11_PARSE(app, argc, argv);
  std::snprintf(g_save_path, sizeof g_save_path, "%s", o.save.c_str());

  const fs::path scratch = fs::temp_directory_path() / fmt::format("dagger-fuzz-{}-{}", o.target, ::getpid());
  fs::create_directories(scratch);
  int status = 2;
  try {
    for (const Target& t : dagger::fuzz::make_targets(scratch.string(), DAGGER_FUZZ_DIR "/fixtures")) {
      if (t.name != o.target) continue;
      install_handlers();
      g_max_allocation = o.max_alloc_mb << 20;
      status = o.replay.empty() ? fuzz(t, o) : replay(t, o);
    }
    if (status == 2) fmt::print(stderr, "dagger-fuzz: unknown target '{}'\n", o.target);
  } catch (const std::exception& e) {
    fmt::print(stderr, "dagger-fuzz: {}\n", e.what());
    status = 1;
  }
  std::error_code ignored;
  fs::remove_all(scratch, ignored);
  return status;
}
