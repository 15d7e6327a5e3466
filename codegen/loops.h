#pragma once
/// Internal to codegen/: loop nests and element access. Kernels are explicit loops over
/// <W x float> vectors; the innermost axis ends with one masked vector so that no size,
/// however small, reads or writes past a buffer.
#include <cstdint>
#include <functional>
#include <vector>

#include "dagger/codegen/emit_context.h"
#include "dagger/graph/graph.h"

namespace dagger {

/// Where in an iteration space a vector of W consecutive innermost positions starts.
struct ElementPos {
  std::vector<llvm::Value*> coords;  // i64 per axis; the last one is lane 0's coordinate
  llvm::Value* flat = nullptr;       // i64 row-major index of lane 0 in the iteration space
  llvm::Value* mask = nullptr;       // <W x i1> of lanes inside the space; nullptr: all W are
};

/// An element generator: the value (<W x float>) of some tensor at a position. Elementwise
/// nodes compose generators, so a whole chain is computed in registers inside one loop.
using ElementGen = std::function<llvm::Value*(const ElementPos&)>;

/// for (i = 0; i < count; i += step) with loop-carried values: `body` gets i and the values
/// carried into this iteration and returns those carried out. Returns the final values.
/// A single iteration is emitted without a loop; count <= 0 emits nothing.
std::vector<llvm::Value*> emit_loop(
    Emit& e, int64_t count, int64_t step, std::vector<llvm::Value*> carried,
    const std::function<std::vector<llvm::Value*>(llvm::Value*, const std::vector<llvm::Value*>&)>& body);
/// emit_loop without carried values.
void emit_for(Emit& e, int64_t count, int64_t step, const std::function<void(llvm::Value*)>& body);
/// emit_loop from `begin` to `end` (step 1), bounds known only at run time; when the range is
/// empty the carried values come out unchanged.
std::vector<llvm::Value*> emit_range_loop(
    Emit& e, llvm::Value* begin, llvm::Value* end, std::vector<llvm::Value*> carried,
    const std::function<std::vector<llvm::Value*>(llvm::Value*, const std::vector<llvm::Value*>&)>& body);
/// for (i = begin; i < end; ++i) with bounds known only at run time (a kernel's item range).
void emit_range(Emit& e, llvm::Value* begin, llvm::Value* end, const std::function<void(llvm::Value*)>& body);
/// if (cond) { then(); }
void emit_if(Emit& e, llvm::Value* cond, const std::function<void()>& then);
/// if (cond) { then(); } else { otherwise(); } (no else branch where `otherwise` is empty).
void emit_if_else(Emit& e, llvm::Value* cond, const std::function<void()>& then,
                  const std::function<void()>& otherwise);

/// How a loop nest over `dims` is split into parallel items: the items are the outer axis
/// (a 1-D space is first cut into chunks of kChunkFloats), so every item is an independent
/// stretch of the innermost loops.
inline constexpr int64_t kChunkFloats = 4096;
int64_t nest_items(const Shape& dims);
/// emit_vector_nest restricted to the items [begin, end) of nest_items(dims).
void emit_vector_nest_items(Emit& e, const Shape& dims, llvm::Value* begin, llvm::Value* end,
                            const std::function<void(const ElementPos&)>& body);

/// Visits every position of `dims` (row-major): a loop per outer axis and, along the innermost
/// axis, full vectors in a loop then one masked vector for the rest.
void emit_vector_nest(Emit& e, const Shape& dims, const std::function<void(const ElementPos&)>& body);

/// A buffer read or written at iteration-space positions through per-axis element strides;
/// the innermost stride is 1 (a vector of consecutive elements) or 0 (one element, repeated).
struct StridedBuffer {
  llvm::Value* base;
  std::vector<int64_t> strides;
  /// store_at writes each whole vector whose address is aligned to its size past the caches
  /// (a non-temporal store), for an output its readers will not find in cache anyway; the
  /// kernel must end with store_fence. Other stores are plain.
  bool streamed = false;
};

/// The W lanes of `buf` at `pos` (masked-off lanes read nothing and hold 0).
llvm::Value* load_at(Emit& e, const StridedBuffer& buf, const ElementPos& pos);
/// Stores the active lanes of `value` at `pos`; `buf`'s innermost stride must be 1.
void store_at(Emit& e, const StridedBuffer& buf, const ElementPos& pos, llvm::Value* value);
/// Orders the streamed stores before it (StridedBuffer::streamed) with every later store, so
/// that they are in memory before the kernel returns and another thread reads them.
void store_fence(Emit& e);

}  // namespace dagger
