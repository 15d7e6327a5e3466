#pragma once
/// The model DSL: Values are handles to graph nodes; layers are plain functions that add
/// nodes and, where they own weights, parameters. Every function takes the caller's source
/// location so each node points at the line of the model that declared it.
#include <cstdint>
#include <source_location>
#include <map>
#include <string>

#include "dagger/graph/graph.h"

namespace dagger {

using Where = std::source_location;

/// A handle to one node of a graph.
struct Value {
  Graph* graph = nullptr;
  NodeId id = -1;
  const Shape& shape() const { return graph->shape(id); }
  const Node& node() const { return graph->node(id); }
};

// Elementwise and layout ops on Values (free functions, so models read like math).
Value add(Value a, Value b, Where w = Where::current());
Value sub(Value a, Value b, Where w = Where::current());
Value mul(Value a, Value b, Where w = Where::current());
Value div(Value a, Value b, Where w = Where::current());
Value neg(Value a, Where w = Where::current());
Value exp(Value a, Where w = Where::current());
Value log(Value a, Where w = Where::current());
Value sqrt(Value a, Where w = Where::current());
Value relu(Value a, Where w = Where::current());
Value tanh(Value a, Where w = Where::current());
Value sigmoid(Value a, Where w = Where::current());
Value elu(Value a, float alpha = 1.0f, Where w = Where::current());
Value selu(Value a, Where w = Where::current());
Value leaky_relu(Value a, float alpha = 0.3f, Where w = Where::current());
Value reshape(Value a, Shape shape, Where w = Where::current());
/// [N, ...] -> [N, prod(...)].
Value flatten(Value a, Where w = Where::current());
Value transpose(Value a, std::vector<int64_t> perm, Where w = Where::current());
Value reduce_sum(Value a, std::vector<int64_t> axes, bool keepdims = false, Where w = Where::current());
Value reduce_mean(Value a, std::vector<int64_t> axes, bool keepdims = false, Where w = Where::current());
Value reduce_max(Value a, std::vector<int64_t> axes, bool keepdims = false, Where w = Where::current());
Value matmul(Value a, Value b, bool trans_a = false, bool trans_b = false, Where w = Where::current());
/// Max pooling with a square window; stride defaults to the window (non-overlapping).
Value maxpool(Value a, int window = 2, int stride = 0, Where w = Where::current());
Value softmax(Value a, Where w = Where::current());
/// A scalar constant in the same graph as `like`.
Value scalar(Value like, double value, Where w = Where::current());

/// The activations the zoo's models choose between, by name.
enum class Act { relu, tanh, sigmoid, elu, selu, leaky_relu };
Value activation(Value a, Act act, Where w = Where::current());
/// "relu" -> Act::relu; throws dagger::Error listing the valid names otherwise.
Act act_from_name(const std::string& name);
std::string act_name(Act act);

enum class Mode { train, eval };
enum class Pad { same, valid };

/// Builds a model into a graph: owns layer naming, parameter creation with seeded
/// initializers, and the train/eval behaviour of dropout and batch normalization.
class Model {
 public:
  /// `classes`: the number of classes the model's logits score (models size their heads by it).
  Model(Graph& g, Mode mode, int64_t classes = 10);

  Graph& graph() { return *g_; }
  Mode mode() const { return mode_; }
  /// Number of classes of the data: the width of the logits a model should return.
  int64_t classes() const { return classes_; }

  /// A runtime input (images, labels, scalars such as the dropout key).
  Value input(const std::string& name, Shape shape, Where w = Where::current());
  /// A trainable parameter. init: "glorot_uniform", "he_uniform", "zeros", "ones"; fans for the scaled ones.
  Value parameter(const std::string& name, Shape shape, const std::string& init, int64_t fan_in = 0,
                  int64_t fan_out = 0, Where w = Where::current());
  /// Non-trainable state (running statistics, optimizer moments, step counter).
  Value state(const std::string& name, Shape shape, const std::string& init, Where w = Where::current());

  /// x [N, K] -> x W + b, W [K, units] Glorot-uniform, b zeros.
  Value dense(Value x, int64_t units, Where w = Where::current());
  /// NCHW convolution with a He-initialized OIHW filter and a zero bias.
  Value conv2d(Value x, int64_t filters, int64_t kernel, Pad pad = Pad::same, int64_t stride = 1,
               Where w = Where::current());
  /// Batch statistics when training (and a running-average update, new = momentum*old + (1-momentum)*batch),
  /// the running statistics when evaluating.
  Value batchnorm(Value x, float momentum = 0.99f, float eps = 1e-3f, Where w = Where::current());
  /// Inverted dropout in training, identity in evaluation.
  Value dropout(Value x, float p, Where w = Where::current());
  /// Declares this graph's `batch` examples to be examples [first, first + batch) of a larger
  /// batch (a rank's shard in data-parallel training): the dropouts added after this draw each
  /// mask element for its position in the larger batch's tensor (their "offset" attribute,
  /// first * elements per example), so the shards' masks are together the whole batch's mask.
  void shard_of_batch(int64_t first, int64_t batch);

  /// The scalar runtime input that seeds this step's dropout masks (created on first use).
  static constexpr const char* kDropoutKey = "dropout_key";

 private:
  std::string layer_name(const std::string& kind);
  Graph* g_;
  Mode mode_;
  int64_t classes_;
  std::map<std::string, int> counters_;
  int64_t dropout_salt_ = 0;
  int64_t shard_first_ = 0, shard_batch_ = 1;  ///< see shard_of_batch
};

}  // namespace dagger
