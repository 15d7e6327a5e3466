// The filter gradient of a 1x1 convolution over few channels (c <= kMaxPointwiseChannels: a
// projection skip from a first layer's one input channel) as one reduction per (filter,
// channel) along the positions, not as a GEMM: dw[f, c] = sum over images and positions j of
// dy[f, j] x[c, j]. As a GEMM such a product has c columns, so a panel of 48 (3 vectors at
// width 16) is 2-19% full and the microkernel multiplies zeros; here each vector of 16
// positions is one load of dy per filter and one of x per channel, every lane useful, and the
// kernel is bound by reading dy once. (With a 3x3 filter the same form, x shifted per tap
// under masks, measured slower than the GEMM on the first layer's 9 columns: see
// docs/performance.md.)
//
// Each sum keeps 16 float partials (codegen/partials.h): position q of an image's run goes to
// partial q % 16, the images in order, then the partials folded partial 0 first. So a value is
// the same bits at every vector width and whichever item computes it.
#include <llvm/IR/Constants.h>

#include <algorithm>

#include "dagger/codegen/emit_conv.h"
#include "dagger/codegen/emit_ops.h"
#include "dagger/codegen/partials.h"

namespace dagger {

namespace {

/// Sums kept at once per item: each is 16 floats of partials (one AVX-512 register of 32; two
/// of AVX2's 16 at width 8; four at width 4), beside one vector of x per channel, dy's and a
/// product.
int64_t sums_per_item(int64_t channels, unsigned width) {
  const int64_t registers = width >= 16 ? 32 : 16, per_sum = std::max<int64_t>(1, 16 / width);
  return std::max<int64_t>(channels, (registers - channels - 3) / per_sum);
}

int64_t filters_per_item(const PointwiseFilterGrad& t, unsigned width) {
  const int64_t sums = sums_per_item(t.c, width), groups = (t.k * t.c + sums - 1) / sums;
  return std::max<int64_t>(1, (t.k + groups - 1) / groups);
}

/// The sums of `filters` filters from `first`, over every image, stored into dw.
void emit_filter_group(Emit& e, const PointwiseFilterGrad& t, llvm::Value* x, llvm::Value* dy, llvm::Value* dw,
                       llvm::Value* first, int64_t filters) {
  const int64_t positions = t.h * t.w;
  Partials sums(e, e.f32, Fold::sum, static_cast<size_t>(filters * t.c));
  sums.reset();
  emit_for(e, t.n, 1, [&](llvm::Value* image) {
    llvm::Value* x_image = e.b.CreateMul(image, e.i64c(t.c * positions));
    llvm::Value* dy_first = e.b.CreateMul(e.b.CreateAdd(e.b.CreateMul(image, e.i64c(t.k)), first), e.i64c(positions));
    sums.add_run(positions, [&](llvm::Value* at, llvm::Value* in_run) {
      std::vector<llvm::Value*> xs;
      for (int64_t c = 0; c < t.c; ++c)
        xs.push_back(
            load_vector(e, x, e.b.CreateAdd(x_image, e.b.CreateAdd(at, e.i64c(c * positions))), in_run, e.splat(0.0f)));
      std::vector<llvm::Value*> terms;
      for (int64_t f = 0; f < filters; ++f) {
        llvm::Value* offset = e.b.CreateAdd(e.b.CreateAdd(dy_first, e.i64c(f * positions)), at);
        llvm::Value* g = load_vector(e, dy, offset, in_run, e.splat(0.0f));
        for (llvm::Value* xv : xs) terms.push_back(e.b.CreateFMul(g, xv));
      }
      return terms;
    });
  });
  for (int64_t f = 0; f < filters; ++f)
    for (int64_t c = 0; c < t.c; ++c) {
      llvm::Value* out = e.b.CreateAdd(e.b.CreateMul(e.b.CreateAdd(first, e.i64c(f)), e.i64c(t.c)), e.i64c(c));
      e.b.CreateAlignedStore(sums.result(static_cast<size_t>(f * t.c + c)), e.b.CreateInBoundsGEP(e.f32, dw, out),
                             llvm::Align(4));
    }
}

}  // namespace

bool pointwise_filter_grad_applies(const PointwiseFilterGrad& t) {
  return t.r == 1 && t.s == 1 && t.pad == 0 && t.c <= kMaxPointwiseChannels;
}

int64_t pointwise_filter_grad_items(const PointwiseFilterGrad& t, unsigned width) {
  const int64_t per_item = filters_per_item(t, width);
  return (t.k + per_item - 1) / per_item;
}

void emit_pointwise_filter_grad(Emit& e, const PointwiseFilterGrad& t, llvm::Value* x, llvm::Value* dy, llvm::Value* dw,
                                llvm::Value* begin, llvm::Value* end) {
  const int64_t per_item = filters_per_item(t, e.width),
                last = t.k - (pointwise_filter_grad_items(t, e.width) - 1) * per_item;
  emit_range(e, begin, end, [&](llvm::Value* item) {
    llvm::Value* first = e.b.CreateMul(item, e.i64c(per_item));
    if (last == per_item) return emit_filter_group(e, t, x, dy, dw, first, per_item);
    llvm::Value* is_last = e.b.CreateICmpEQ(first, e.i64c(t.k - last));
    emit_if(e, e.b.CreateNot(is_last), [&] { emit_filter_group(e, t, x, dy, dw, first, per_item); });
    emit_if(e, is_last, [&] { emit_filter_group(e, t, x, dy, dw, first, last); });
  });
}

}  // namespace dagger
