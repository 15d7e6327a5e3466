#include "dagger/codegen/vector_math.h"

#include <cmath>
#include <limits>

namespace dagger {

namespace {

/// c[0] + x*(c[1] + x*(c[2] + ...)) with fused multiply-adds.
llvm::Value* horner(Emit& e, llvm::Value* x, const std::vector<double>& c) {
  llvm::Value* acc = e.splat(static_cast<float>(c.back()));
  for (size_t k = c.size() - 1; k-- > 0;) acc = e.fma(acc, x, e.splat(static_cast<float>(c[k])));
  return acc;
}

/// 1/k! for k = 0..n.
std::vector<double> inverse_factorials(int n) {
  std::vector<double> c{1.0};
  for (int k = 1; k <= n; ++k) c.push_back(c.back() / k);
  return c;
}

/// ln 2 split so that n * kLn2Hi + n * kLn2Lo recovers n * ln 2 to well beyond float precision.
const float kLn2Hi = static_cast<float>(M_LN2);
const float kLn2Lo = static_cast<float>(M_LN2 - static_cast<double>(kLn2Hi));

/// 2^n for i32 lanes n in [-126, 127], built directly in the exponent field.
llvm::Value* pow2(Emit& e, llvm::Value* n) {
  llvm::Value* biased = e.b.CreateShl(e.b.CreateAdd(n, e.splat_i32(127)), e.splat_i32(23));
  return e.b.CreateBitCast(biased, e.vf);
}

llvm::Value* clamp_above(Emit& e, llvm::Value* x, float hi) {
  return e.select(e.b.CreateFCmpOGT(x, e.splat(hi)), e.splat(hi), x);  // NaN stays NaN
}

llvm::Value* clamp_below(Emit& e, llvm::Value* x, float lo) {
  return e.select(e.b.CreateFCmpOLT(x, e.splat(lo)), e.splat(lo), x);
}

}  // namespace

llvm::Value* emit_exp(Emit& e, llvm::Value* x) {
  // e^x = 2^n * e^r with n = round(x / ln 2) and |r| <= ln(2)/2, where a degree-7 Taylor
  // polynomial is exact to float precision. Clamping first keeps n within [-150, 129]; the
  // clamped ends still over- and underflow to inf and 0.
  llvm::Value* xc = clamp_below(e, clamp_above(e, x, 89.0f), -104.0f);
  llvm::Value* n = e.intrinsic(llvm::Intrinsic::roundeven, {e.b.CreateFMul(xc, e.splat(static_cast<float>(M_LOG2E)))});
  llvm::Value* r = e.fma(e.b.CreateFNeg(n), e.splat(kLn2Hi), xc);
  r = e.fma(e.b.CreateFNeg(n), e.splat(kLn2Lo), r);
  llvm::Value* p = horner(e, r, inverse_factorials(7));
  // 2^n in two factors, each a normal float, so subnormal results round only once.
  llvm::Value* ni = e.b.CreateFPToSI(n, e.vi);
  llvm::Value* half = e.b.CreateAShr(ni, e.splat_i32(1));
  llvm::Value* y = e.b.CreateFMul(e.b.CreateFMul(p, pow2(e, half)), pow2(e, e.b.CreateSub(ni, half)));
  // A NaN lane made n poison above; give it back its NaN.
  return e.select(e.b.CreateFCmpUNO(x, x), x, y);
}

llvm::Value* emit_expm1(Emit& e, llvm::Value* x) {
  // Near 0, x * (1 + x/2! + x^2/3! + ... + x^8/9!) avoids the cancellation of exp(x) - 1; for
  // |x| >= 1/2 that cancellation costs at most a bit.
  std::vector<double> series = inverse_factorials(9);
  series.erase(series.begin());  // x^k/k! = x * x^(k-1)/k!: coefficients 1/1!, 1/2!, ...
  llvm::Value* small = e.b.CreateFMul(x, horner(e, x, series));
  llvm::Value* large = e.b.CreateFSub(emit_exp(e, x), e.splat(1.0f));
  llvm::Value* abs = e.intrinsic(llvm::Intrinsic::fabs, {x});
  return e.select(e.b.CreateFCmpOLT(abs, e.splat(0.5f)), small, large);
}

llvm::Value* emit_log(Emit& e, llvm::Value* x) {
  // x = m * 2^k with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172,
  // whose odd series 2(s + s^3/3 + ... + s^9/9) is exact to float precision.
  llvm::Value* subnormal = e.b.CreateFCmpOLT(x, e.splat(std::numeric_limits<float>::min()));
  llvm::Value* xs = e.select(subnormal, e.b.CreateFMul(x, e.splat(0x1p23f)), x);
  llvm::Value* bits = e.b.CreateBitCast(xs, e.vi);
  llvm::Value* k = e.b.CreateSub(e.b.CreateLShr(bits, e.splat_i32(23)), e.splat_i32(127));
  k = e.b.CreateSub(k, e.select(subnormal, e.splat_i32(23), e.splat_i32(0)));
  llvm::Value* m =
      e.b.CreateBitCast(e.b.CreateOr(e.b.CreateAnd(bits, e.splat_i32(0x007FFFFFu)), e.splat_i32(0x3F800000u)), e.vf);
  llvm::Value* above = e.b.CreateFCmpOGT(m, e.splat(static_cast<float>(M_SQRT2)));
  m = e.select(above, e.b.CreateFMul(m, e.splat(0.5f)), m);
  k = e.b.CreateAdd(k, e.b.CreateZExt(above, e.vi));

  llvm::Value* s = e.b.CreateFDiv(e.b.CreateFSub(m, e.splat(1.0f)), e.b.CreateFAdd(m, e.splat(1.0f)));
  llvm::Value* s2 = e.b.CreateFMul(s, s);
  llvm::Value* series = horner(e, s2, {1.0, 1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9});
  llvm::Value* log_m = e.b.CreateFMul(e.b.CreateFMul(e.splat(2.0f), s), series);
  llvm::Value* kf = e.b.CreateSIToFP(k, e.vf);
  llvm::Value* y = e.fma(kf, e.splat(kLn2Hi), e.fma(kf, e.splat(kLn2Lo), log_m));

  const float inf = std::numeric_limits<float>::infinity();
  y = e.select(e.b.CreateFCmpOEQ(x, e.splat(0.0f)), e.splat(-inf), y);
  y = e.select(e.b.CreateFCmpOLT(x, e.splat(0.0f)), e.splat(std::numeric_limits<float>::quiet_NaN()), y);
  y = e.select(e.b.CreateFCmpOEQ(x, e.splat(inf)), x, y);
  return e.select(e.b.CreateFCmpUNO(x, x), x, y);
}

llvm::Value* emit_tanh(Emit& e, llvm::Value* x) {
  // Past |x| = 10 tanh is 1 to float precision; clamping keeps expm1(2|x|) finite.
  llvm::Value* a = clamp_above(e, e.intrinsic(llvm::Intrinsic::fabs, {x}), 10.0f);
  llvm::Value* em1 = emit_expm1(e, e.b.CreateFMul(a, e.splat(2.0f)));
  llvm::Value* t = e.b.CreateFDiv(em1, e.b.CreateFAdd(em1, e.splat(2.0f)));
  return e.intrinsic(llvm::Intrinsic::copysign, {t, x});
}

llvm::Value* emit_sigmoid(Emit& e, llvm::Value* x) {
  llvm::Value* denom = e.b.CreateFAdd(e.splat(1.0f), emit_exp(e, e.b.CreateFNeg(x)));
  return e.b.CreateFDiv(e.splat(1.0f), denom);
}

namespace {

/// random_detail::avalanche, on i32 lanes.
llvm::Value* avalanche(Emit& e, llvm::Value* h, uint32_t multiplier) {
  h = e.b.CreateXor(h, e.b.CreateLShr(h, e.splat_i32(16)));
  h = e.b.CreateMul(h, e.splat_i32(multiplier));
  h = e.b.CreateXor(h, e.b.CreateLShr(h, e.splat_i32(15)));
  h = e.b.CreateMul(h, e.splat_i32(0x2C1B3C6Du));
  return e.b.CreateXor(h, e.b.CreateLShr(h, e.splat_i32(16)));
}

}  // namespace

llvm::Value* emit_dropout_hash(Emit& e, llvm::Value* key, uint32_t salt, llvm::Value* index) {
  // The constants and steps must stay those of graph/random.h: masks are compared bit for bit.
  llvm::Value* h = avalanche(e, e.b.CreateXor(key, e.splat_i32(0x9E3779B9u)), 0x85EBCA6Bu);
  h = avalanche(e, e.b.CreateAdd(h, e.splat_i32(salt * 0x27D4EB2Fu)), 0xC2B2AE35u);
  return avalanche(e, e.b.CreateXor(h, e.b.CreateMul(index, e.splat_i32(0x165667B1u))), 0x7FEB352Du);
}

llvm::Value* emit_dropout_keeps(Emit& e, llvm::Value* key, uint32_t salt, llvm::Value* index, float p) {
  llvm::Value* top24 = e.b.CreateLShr(emit_dropout_hash(e, key, salt, index), e.splat_i32(8));
  llvm::Value* u = e.b.CreateFMul(e.b.CreateUIToFP(top24, e.vf), e.splat(0x1p-24f));  // exact
  return e.b.CreateFCmpOGE(u, e.splat(p));
}

}  // namespace dagger
