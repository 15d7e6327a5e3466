#pragma once
/// A cost model of the graph: floating-point operations and bytes moved per node and per
/// kernel (a set of fused nodes), for the benchmark's GFLOP/s and GB/s and for dumps.
///
/// FLOPs count a fused multiply-add as 2. Contractions are exact (matmul 2*M*N*K; conv2d and
/// both its backward products 2*N*K*C*R*S*P*Q); elementwise ops count 1 per output element;
/// reductions 1 per input element; composites a fixed count per element, documented in
/// cost.cpp. Bytes are the compulsory traffic: every operand read once and the result
/// written once, 4 bytes per float.
#include <cstdint>
#include <vector>

#include "dagger/graph/graph.h"

namespace dagger {

struct Cost {
  double flops = 0;
  double bytes = 0;
  Cost& operator+=(const Cost& o) {
    flops += o.flops;
    bytes += o.bytes;
    return *this;
  }
};

/// Bytes of one float.
inline constexpr double kBytesPerFloat = 4;

/// Floating-point operations `n` performs (0 for sources, layout ops and assigns).
double node_flops(const Graph& g, NodeId n);

/// The node run on its own: its FLOPs, its operands read and its result written. Sources and
/// assigns cost nothing.
Cost node_cost(const Graph& g, NodeId n);

/// A fused kernel computing `nodes` and storing `root`: the FLOPs of every node; bytes of each
/// distinct value read from outside the set plus the root written. Values computed and
/// consumed inside the kernel never reach memory and are not counted.
Cost kernel_cost(const Graph& g, const std::vector<NodeId>& nodes, NodeId root);

/// The whole graph as one step: FLOPs of every node (bytes are each node run on its own).
Cost graph_cost(const Graph& g);

/// Whether `op` is of the matmul family (matmul, conv2d and its backward products), whose
/// kernels are measured against the machine's GEMM peak rather than its memory bandwidth.
bool is_contraction(Op op);

}  // namespace dagger
