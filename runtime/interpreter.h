#pragma once
/// The reference interpreter: runs a graph node by node with one plain, obviously correct
/// function per op. It is the oracle every generated kernel is tested against, and it runs
/// in double precision too so gradient checks can use finite differences.
#include <map>
#include <string>
#include <vector>

#include "dagger/graph/graph.h"
#include "dagger/runtime/tensor.h"

namespace dagger {

/// Named tensors: feeds, parameters and states, or a step's outputs.
template <class T>
using TensorMap = std::map<std::string, xt::xarray<T>>;

/// Runs g node by node. feeds: inputs by name; state: parameters and states by name. A
/// missing or mis-shaped feed or state entry is a dagger::Error naming it. After all nodes
/// run, every assign writes its value into state[target] (so all assigns see pre-step
/// values). Returns the graph's outputs by name.
template <class T>
TensorMap<T> interpret(const Graph& g, const TensorMap<T>& feeds, TensorMap<T>& state);

/// Like interpret, but returns the value of every node, indexed by NodeId (an assign holds
/// the value it would write), and leaves state untouched. For tests and kernel comparisons.
template <class T>
std::vector<xt::xarray<T>> interpret_all(const Graph& g, const TensorMap<T>& feeds, const TensorMap<T>& state);

extern template TensorMap<float> interpret(const Graph&, const TensorMap<float>&, TensorMap<float>&);
extern template TensorMap<double> interpret(const Graph&, const TensorMap<double>&, TensorMap<double>&);
extern template std::vector<xt::xarray<float>> interpret_all(const Graph&, const TensorMap<float>&,
                                                             const TensorMap<float>&);
extern template std::vector<xt::xarray<double>> interpret_all(const Graph&, const TensorMap<double>&,
                                                              const TensorMap<double>&);

}  // namespace dagger
