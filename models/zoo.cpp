#include "dagger/models/zoo.h"

#include <fmt/format.h>

#include <cmath>

#include <sstream>

namespace dagger::zoo {

ModelFn shallow() {
  return [](Model& m, Value x) { return m.dense(flatten(x), m.classes()); };
}

ModelFn mlp1(int64_t units, Act act, float p) {
  return [=](Model& m, Value x) {
    x = m.dropout(activation(m.dense(flatten(x), units), act), p);
    return m.dense(x, m.classes());
  };
}

ModelFn mlp2(int64_t h1, int64_t h2, float p1, float p2, bool bn) {
  return [=](Model& m, Value x) {
    x = flatten(x);
    for (auto [units, p] : {std::pair{h1, p1}, std::pair{h2, p2}}) {
      x = m.dense(x, units);
      if (bn) x = m.batchnorm(x);
      x = m.dropout(relu(x), p);
    }
    return m.dense(x, m.classes());
  };
}

/// The classifier every CNN of the study ends with.
static Value cnn_head(Model& m, Value x, int64_t h, float p) {
  x = m.dropout(relu(m.dense(flatten(x), h)), p);
  return m.dense(x, m.classes());
}

/// Throws when `x` ([N, C, H, W]) is too small to halve `stages` times and keep a pixel.
static void require_poolable(const char* family, Value x, int stages) {
  const Shape& s = x.shape();
  const int64_t need = int64_t{1} << stages;
  if (s.size() != 4 || s[2] < need || s[3] < need) {
    throw Error(fmt::format("{} pools {} times and needs images of at least {}x{}, got input {}", family, stages, need,
                            need, to_string(s)));
  }
}

ModelFn cnn(int blocks, bool bn, float p, float q, int64_t h) {
  return [=](Model& m, Value x) {
    require_poolable("cnn", x, blocks);
    for (int i = 0; i < blocks; ++i) {
      x = m.conv2d(x, 32 << i, 3);
      if (bn) x = m.batchnorm(x);
      x = m.dropout(maxpool(relu(x), 2), q);
    }
    return cnn_head(m, x, h, p);
  };
}

ModelFn rescnn(bool residual, float q, int64_t h, float p) {
  return [=](Model& m, Value x) {
    require_poolable("rescnn", x, 3);
    for (int64_t filters : {32, 64, 128}) {
      Value y = relu(m.batchnorm(m.conv2d(x, filters, 3)));
      y = m.batchnorm(m.conv2d(y, filters, 3));
      if (residual) {
        Value skip = x.shape()[1] == filters ? x : m.conv2d(x, filters, 1);
        y = add(y, skip);
      }
      x = m.dropout(maxpool(relu(y), 2), q);
    }
    return cnn_head(m, x, h, p);
  };
}

ModelFn resnet(int blocks, int64_t width, float p) {
  return [=](Model& m, Value x) {
    require_poolable("resnet", x, 2);
    x = m.conv2d(x, width, 3);
    for (int64_t stage = 0; stage < 3; ++stage) {
      const int64_t filters = width << stage;
      if (stage > 0) x = maxpool(x, 2);
      for (int b = 0; b < blocks; ++b) {
        // Pre-activation: the skip carries x untouched, or its normalized form projected where
        // the width changes, so the sum of the blocks is not normalized away.
        Value h = relu(m.batchnorm(x));
        Value skip = x.shape()[1] == filters ? x : m.conv2d(h, filters, 1);
        Value y = m.conv2d(h, filters, 3);
        y = m.conv2d(relu(m.batchnorm(y)), filters, 3);
        x = add(y, skip);
      }
    }
    x = reduce_mean(relu(m.batchnorm(x)), {2, 3});
    return m.dense(m.dropout(x, p), m.classes());
  };
}

namespace {

Entry parse_call(const std::string& spec, std::string* canonical = nullptr);

/// A named model: its name, what it is, and the call it stands for.
struct Named {
  const char* name;
  const char* description;
  const char* call;
};

const Named kNamed[] = {
    {"shallow", "Flatten -> Dense(classes)", "shallow()"},
    {"mlp512", "mlp1(512, relu, 0.2): the best one-hidden-layer MLP", "mlp1(512,relu,0.2)"},
    {"mlp2048", "mlp2(2048, 512, 0.2, 0.4, no bn): the tuned two-hidden-layer MLP", "mlp2(2048,512,0.2,0.4,nobn)"},
    {"cnn3", "cnn(3, bn, 0.5, 0.25, 256): the tuned CNN", "cnn(3,bn,0.5,0.25,256)"},
    {"rescnn", "rescnn(residual): three residual stages of stacked convolutions", "rescnn(residual)"},
};

const Named* named(const std::string& spec) {
  for (const Named& n : kNamed)
    if (spec == n.name) return &n;
  return nullptr;
}

}  // namespace

const std::vector<Entry>& entries() {
  static const std::vector<Entry> list = [] {
    std::vector<Entry> l;
    for (const Named& n : kNamed) l.push_back({n.name, n.description, parse_call(n.call).build});
    return l;
  }();
  return list;
}

namespace {

std::vector<std::string> split_args(const std::string& inside) {
  std::vector<std::string> args;
  std::stringstream ss(inside);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    args.push_back(item);
  }
  return args;
}

/// Widest dense layer a call may ask for, and most convolution blocks (each halves the image).
constexpr int64_t kMaxWidth = 65536;
constexpr int64_t kMaxBlocks = 8;
/// Most parameters a model of a call may have (1 GiB of floats; Adam keeps two more copies).
constexpr int64_t kMaxParameters = int64_t{1} << 28;

double number(const std::string& spec, const std::string& arg) {
  try {
    size_t used = 0;
    double v = std::stod(arg, &used);
    if (used == arg.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("model '{}': '{}' is not a number", spec, arg));
}

bool flag(const std::string& spec, const std::string& arg, const std::string& yes, const std::string& no) {
  if (arg == yes || arg == "1" || arg == "true") return true;
  if (arg == no || arg == "0" || arg == "false") return false;
  throw Error(fmt::format("model '{}': '{}' must be '{}' or '{}'", spec, arg, yes, no));
}

[[noreturn]] void unknown(const std::string& spec) {
  std::vector<std::string> names;
  for (const Entry& e : entries()) names.push_back(e.name);
  throw Error(fmt::format("unknown model '{}' (valid: {}; or shallow(), mlp1(u,act,p), mlp2(h1,h2,p1,p2,bn|nobn), "
                          "cnn(k,bn|nobn,p[,q[,h]]), rescnn(residual|plain[,q[,h]]), resnet(n,w[,p]))",
                          spec, fmt::join(names, ", ")));
}

/// Builds the model a call stands for. With `canonical`, also writes the call with every
/// argument given and spelled one way: numbers as the values the model is built from, flags
/// and activations by name, defaults filled in.
Entry parse_call(const std::string& spec, std::string* canonical) {
  auto open = spec.find('(');
  if (open == std::string::npos || spec.back() != ')') unknown(spec);
  std::string fn = spec.substr(0, open);
  std::vector<std::string> a = split_args(spec.substr(open + 1, spec.size() - open - 2));
  if (a.size() == 1 && a[0].empty()) a.clear();
  auto arity = [&](size_t lo, size_t hi) {
    if (a.size() < lo || a.size() > hi)
      throw Error(fmt::format("model '{}': {} takes {} to {} arguments, got {}", spec, fn, lo, hi, a.size()));
  };
  std::vector<std::string> spelled;  // the arguments in canonical form, in order
  // A whole number in lo..hi, or a probability in [0, 1): anything else names the argument.
  auto i = [&](size_t k, const char* what, int64_t lo, int64_t hi) {
    const double d = number(spec, a[k]);
    if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != std::floor(d))
      throw Error(fmt::format("model '{}': {} '{}' must be a whole number from {} to {}", spec, what, a[k], lo, hi));
    const auto v = static_cast<int64_t>(d);
    spelled.push_back(std::to_string(v));
    return v;
  };
  auto f = [&](size_t k, const char* what) {
    const double d = number(spec, a[k]);
    if (!(d >= 0 && d < 1))
      throw Error(fmt::format("model '{}': {} '{}' must be a probability in [0, 1)", spec, what, a[k]));
    const auto v = static_cast<float>(d);
    spelled.push_back(fmt::format("{}", v));
    return v;
  };
  auto i_or = [&](size_t k, const char* what, int64_t lo, int64_t hi, int64_t otherwise) {
    if (k < a.size()) return i(k, what, lo, hi);
    spelled.push_back(std::to_string(otherwise));
    return otherwise;
  };
  auto f_or = [&](size_t k, const char* what, float otherwise) {
    if (k < a.size()) return f(k, what);
    spelled.push_back(fmt::format("{}", otherwise));
    return otherwise;
  };
  auto yes_no = [&](size_t k, const std::string& yes, const std::string& no) {
    const bool v = flag(spec, a[k], yes, no);
    spelled.push_back(v ? yes : no);
    return v;
  };
  Entry entry;
  if (fn == "shallow") {
    arity(0, 0);
    entry = {spec, "shallow network", shallow()};
  } else if (fn == "mlp1") {
    arity(3, 3);
    const int64_t units = i(0, "units", 1, kMaxWidth);
    const Act act = act_from_name(a[1]);
    spelled.push_back(act_name(act));
    entry = {spec, "one hidden layer", mlp1(units, act, f(2, "dropout rate"))};
  } else if (fn == "mlp2") {
    arity(5, 5);
    const int64_t h1 = i(0, "h1", 1, kMaxWidth), h2 = i(1, "h2", 1, kMaxWidth);
    const float p1 = f(2, "p1"), p2 = f(3, "p2");
    entry = {spec, "two hidden layers", mlp2(h1, h2, p1, p2, yes_no(4, "bn", "nobn"))};
  } else if (fn == "cnn") {
    arity(3, 5);
    const int blocks = static_cast<int>(i(0, "blocks", 1, kMaxBlocks));
    const bool bn = yes_no(1, "bn", "nobn");
    const float p = f(2, "p"), q = f_or(3, "q", 0.f);
    entry = {spec, "CNN", cnn(blocks, bn, p, q, i_or(4, "h", 1, kMaxWidth, 128))};
  } else if (fn == "rescnn") {
    arity(1, 3);
    const bool residual = yes_no(0, "residual", "plain");
    const float q = f_or(1, "q", 0.25f);
    entry = {spec, "stacked CNN", rescnn(residual, q, i_or(2, "h", 1, kMaxWidth, 256))};
  } else if (fn == "resnet") {
    arity(2, 3);
    const int blocks = static_cast<int>(i(0, "blocks per stage", 1, kMaxBlocks));
    const int64_t width = i(1, "width", 1, kMaxWidth / 4);
    entry = {spec, "residual network", resnet(blocks, width, f_or(2, "p", 0.f))};
  } else {
    unknown(spec);
  }
  // On 28x28 images, where the model fits them; larger models for larger images meet the
  // trainer's own limit (runtime/trainer.cpp) before anything is allocated.
  int64_t parameters = 0;
  try {
    parameters = parameter_count(entry.build);
  } catch (const Error&) {
  }
  if (parameters > kMaxParameters)
    throw Error(fmt::format("model '{}' has {} parameters on 28x28 images, more than the {} a model may have", spec,
                            parameters, kMaxParameters));
  if (canonical) *canonical = fmt::format("{}({})", fn, fmt::join(spelled, ","));
  return entry;
}

}  // namespace

Entry find(const std::string& spec) {
  for (const Entry& e : entries())
    if (e.name == spec) return e;
  return parse_call(spec);
}

std::string canonical_call(const std::string& spec) {
  std::string canonical;
  const Named* n = named(spec);
  parse_call(n ? n->call : spec, &canonical);
  return canonical;
}

int64_t parameter_count(const ModelFn& model, const Shape& input_shape, int64_t classes) {
  Graph g = build_forward(model, 1, Mode::eval, input_shape, classes);
  int64_t total = 0;
  for (NodeId id : g.nodes_of(Op::parameter)) total += numel(g.shape(id));
  return total;
}

}  // namespace dagger::zoo
