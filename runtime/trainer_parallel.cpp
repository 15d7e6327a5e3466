// Data-parallel training: the Trainer's epochs and evaluation over a Communicator's ranks.
#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "dagger/runtime/distributed.h"
#include "dagger/runtime/trainer.h"
#include "dagger/runtime/trainer_steps.h"

namespace dagger {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// The values every rank contributes to a step's one fused sum, in a fixed order: the
/// gradients (by parameter name), the batchnorm running statistics the step assigned (by name),
/// the batch's loss, then its count of right answers.
class FusedBuffer {
 public:
  /// Lays out the buffer for the gradient plan's outputs and assigned states.
  FusedBuffer(const std::vector<std::string>& grads, const std::vector<std::string>& stats, const StateMap& shapes_of)
      : grads_(grads), stats_(stats) {
    size_t size = 0;
    for (const std::string& name : grads_) size += shapes_of.at(name).size();
    for (const std::string& name : stats_) size += shapes_of.at(name).size();
    values_.assign(size + 2, 0.0f);
  }
  /// This rank's share: its shard's values scaled by `weight` (its share of the batch), so that
  /// the sum over ranks is the mean over the whole batch. An empty shard contributes zeros.
  void pack(const StateMap* outputs, const StateMap& state, float weight, int64_t correct) {
    std::fill(values_.begin(), values_.end(), 0.0f);
    if (outputs) {
      float* at = values_.data();
      for (const std::string& name : grads_) at = scaled(outputs->at(gradient_name(name)), weight, at);
      for (const std::string& name : stats_) at = scaled(state.at(name), weight, at);
      *at = outputs->at("loss")() * weight;
    }
    values_.back() = static_cast<float>(correct);  // below 2^24: exact
  }
  /// Takes the summed buffer apart: gradients into `feeds`, statistics into `state`.
  void unpack(StateMap& feeds, StateMap& state, double& loss, int64_t& correct) const {
    const float* at = values_.data();
    for (const std::string& name : grads_) at = copied(at, feeds[gradient_name(name)], state.at(name));
    for (const std::string& name : stats_) at = copied(at, state.at(name), state.at(name));
    loss = *at;
    correct = static_cast<int64_t>(values_.back());
  }
  std::vector<float>& values() { return values_; }

 private:
  static float* scaled(const Tensor& t, float weight, float* at) {
    for (float v : t) *at++ = v * weight;
    return at;
  }
  static const float* copied(const float* at, Tensor& to, const Tensor& like) {
    if (to.shape() != like.shape()) to = Tensor::from_shape(like.shape());
    std::copy_n(at, like.size(), to.begin());
    return at + like.size();
  }

  std::vector<std::string> grads_, stats_;
  std::vector<float> values_;
};

}  // namespace

bool Trainer::writes_files() const { return !config_.communicator || config_.communicator->rank() == 0; }

std::pair<int64_t, int64_t> Trainer::shard(int64_t n) const {
  if (!config_.communicator) return {0, n};
  const int64_t r = config_.communicator->rank(), ranks = config_.communicator->size();
  return {n * r / ranks, n * (r + 1) / ranks};
}

Executable& Trainer::gradient_plan(int64_t batch, int64_t first) {
  auto& slot = gradient_plans_[{batch, first}];
  if (!slot)
    slot = make_executable(
        build_gradient_step(model_, batch, config_.input_shape, config_.classes, config_.label_smoothing, first),
        config_.executor, {config_.threads, config_.conv_algo, false, config_.precision});
  return *slot;
}

Executable& Trainer::update_plan() {
  if (!update_plan_)
    update_plan_ = make_executable(build_update_step(model_, config_.optimizer, config_.input_shape, config_.classes),
                                   config_.executor, {config_.threads, config_.conv_algo, false, config_.precision});
  return *update_plan_;
}

EpochStats Trainer::run_epoch_parallel(const Dataset& train, int epoch, double lr) {
  const Communicator& comm = *config_.communicator;
  const auto t0 = Clock::now();
  const int64_t n = static_cast<int64_t>(train.size());
  std::vector<size_t> order = shuffled_order(train.size(), config_.seed, static_cast<uint64_t>(epoch));
  // The buffer's layout: every parameter's gradient and every state the gradient step assigns.
  std::vector<std::string> grads, stats;
  const Graph layout = build_gradient_step(model_, 1, config_.input_shape, config_.classes);
  for (NodeId id : layout.nodes_of(Op::parameter)) grads.push_back(layout.node(id).attrs.s("name"));
  for (NodeId id : layout.nodes_of(Op::assign)) stats.push_back(layout.node(id).attrs.s("target"));
  FusedBuffer buffer(grads, stats, state_);
  double loss_sum = 0, sum_seconds = 0;
  int64_t correct_sum = 0;
  Tensor images, labels;
  for (int64_t begin = 0; begin < n; begin += config_.batch) {
    const int64_t count = std::min(config_.batch, n - begin);
    const auto [first, end] = shard(count);
    const int64_t mine = end - first;
    StateMap outputs;
    int64_t correct = 0;
    if (mine > 0) {
      const size_t at = static_cast<size_t>(begin + first);
      gather_batch(train, order, at, static_cast<size_t>(mine), images, labels);
      augment_batch(config_.augment, config_.seed, epoch, order, at, images);
      // Every rank draws with the one-process key; the plan keys each mask element by its
      // position in the global batch, so the ranks' masks are together one process's.
      StateMap feeds{
          {"x", images}, {"labels", labels}, {"dropout_key", scalar_tensor(dropout_key(config_.seed, step_))}};
      outputs = gradient_plan(mine, first).run(feeds, state_);
      std::vector<int> pred = argmax_rows(outputs.at("logits"));
      for (int64_t i = 0; i < mine; ++i) correct += pred[i] == static_cast<int>(labels(i));
    }
    const auto t_sum = Clock::now();
    buffer.pack(mine > 0 ? &outputs : nullptr, state_,
                static_cast<float>(static_cast<double>(mine) / static_cast<double>(count)), correct);
    comm.sum_in_rank_order(buffer.values());
    StateMap update_feeds{{"lr", scalar_tensor(lr)}};
    double loss = 0;
    buffer.unpack(update_feeds, state_, loss, correct);
    sum_seconds += seconds_since(t_sum);
    update_plan().run(update_feeds, state_);
    ++step_;
    // Every rank sees the same summed loss, so all of them stop here together.
    if (!std::isfinite(loss))
      throw Error(fmt::format("training diverged: loss is {} at epoch {}, step {}", loss, epoch, step_));
    loss_sum += loss * static_cast<double>(count);
    correct_sum += correct;
  }
  EpochStats s = epoch_stats(epoch, lr, n, loss_sum, correct_sum, seconds_since(t0));
  s.sum_seconds = sum_seconds;
  return s;
}

std::pair<Tensor, Tensor> Trainer::infer_sharded(const Tensor& images) {
  const int64_t n = images.dimension() > 0 ? static_cast<int64_t>(images.shape(0)) : 0;
  const auto [first, end] = shard(n);
  std::vector<float> logits, probs;
  if (end > first) {
    std::vector<size_t> shape(images.shape().begin(), images.shape().end());
    shape[0] = static_cast<size_t>(end - first);
    Tensor slice = Tensor::from_shape(shape);
    const size_t per_image = images.size() / static_cast<size_t>(n);
    std::copy_n(images.begin() + first * per_image, slice.size(), slice.begin());
    auto [l, p] = infer(slice);
    logits.assign(l.begin(), l.end());
    probs.assign(p.begin(), p.end());
  }
  // Gathered in rank order, the shards are the images' order again.
  const std::vector<size_t> shape = {static_cast<size_t>(n), static_cast<size_t>(config_.classes)};
  const auto whole = [&](const std::vector<float>& part) {
    std::vector<float> all = config_.communicator->gather_all(part);
    Tensor t = Tensor::from_shape(shape);
    if (all.size() != t.size()) throw Error(fmt::format("gathered {} scores for {} images", all.size(), n));
    std::copy(all.begin(), all.end(), t.begin());
    return t;
  };
  Tensor logits_all = whole(logits);
  return {std::move(logits_all), whole(probs)};
}

bool Trainer::find_run_to_resume(const std::string& last_dir, const std::string& best_dir) const {
  if (!config_.communicator) return recover_checkpoint(last_dir);
  const Communicator& comm = *config_.communicator;
  // Rank 0 alone repairs an interrupted save (it renames and deletes folders), before any other
  // rank reads; the others then find what it found or stop, rather than train from another start.
  std::string found;
  if (comm.rank() == 0) {
    found.push_back(recover_checkpoint(last_dir) ? '1' : '0');
    recover_checkpoint(best_dir);
  }
  comm.broadcast(found, 0);
  if (found == "1" && comm.rank() != 0 && !recover_checkpoint(last_dir))
    throw Error(
        fmt::format("rank {} cannot read '{}', which rank 0 resumes from: resuming a data-parallel run needs "
                    "--out on a file system every rank shares",
                    comm.rank(), last_dir));
  return found == "1";
}

}  // namespace dagger
