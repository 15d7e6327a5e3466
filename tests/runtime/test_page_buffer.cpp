// The plan's large buffers: mapped memory of the asked size and fill, aligned, moved without
// copies, and a clear error where the memory cannot be had.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <utility>

#include "dagger/graph/error.h"
#include "dagger/runtime/page_buffer.h"

using namespace dagger;

namespace {

bool all_equal(const PageBuffer& b, float value) {
  for (int64_t i = 0; i < b.floats(); ++i)
    if (!(b.data()[i] == value || (std::isnan(value) && std::isnan(b.data()[i])))) return false;
  return true;
}

}  // namespace

TEST_CASE("page buffers hold their floats zeroed or filled, page-aligned, huge-aligned from 2 MiB", "[page_buffer]") {
  const int64_t two_mib = int64_t{1} << 19;  // floats in 2 MiB
  for (const int64_t floats :
       {int64_t{1}, int64_t{1023}, int64_t{1024}, int64_t{5000}, two_mib - 1, two_mib, two_mib + 17, 3 * two_mib + 1}) {
    CAPTURE(floats);
    PageBuffer zero(floats, 0.0f, "a test buffer");
    REQUIRE(zero.data() != nullptr);
    CHECK(zero.floats() == floats);
    CHECK(reinterpret_cast<uintptr_t>(zero.data()) % 4096 == 0);
    const bool huge = floats * 4 >= (int64_t{2} << 20);
    CHECK(zero.advised_huge() == huge);
    if (huge) CHECK(reinterpret_cast<uintptr_t>(zero.data()) % (uintptr_t{2} << 20) == 0);
    CHECK(all_equal(zero, 0.0f));
    CHECK_FALSE(std::signbit(zero.data()[floats - 1]));
    zero.data()[floats - 1] = 3.0f;  // the last float is writable
    CHECK(zero.data()[floats - 1] == 3.0f);

    PageBuffer nan(floats, std::numeric_limits<float>::quiet_NaN(), "a test buffer");
    CHECK(all_equal(nan, std::numeric_limits<float>::quiet_NaN()));
    PageBuffer minus_zero(floats, -0.0f, "a test buffer");
    CHECK(std::signbit(minus_zero.data()[0]));
    CHECK(std::signbit(minus_zero.data()[floats - 1]));
  }
}

TEST_CASE("a page buffer moves its memory and an empty one holds none", "[page_buffer]") {
  PageBuffer empty(0, 1.0f, "a test buffer");
  CHECK(empty.data() == nullptr);
  CHECK(empty.floats() == 0);
  PageBuffer a(3000, 2.0f, "a test buffer");
  float* const memory = a.data();
  PageBuffer b(std::move(a));
  CHECK(b.data() == memory);
  CHECK(b.floats() == 3000);
  CHECK(a.data() == nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  CHECK(a.floats() == 0);
  PageBuffer c(10, 5.0f, "a test buffer");
  c = std::move(b);
  CHECK(c.data() == memory);
  CHECK(all_equal(c, 2.0f));
}

TEST_CASE("a page buffer the address space cannot hold is refused with its name", "[page_buffer]") {
  CHECK_THROWS_WITH(PageBuffer(int64_t{1} << 46, 0.0f, "the plan's arena"),
                    Catch::Contains("cannot map") && Catch::Contains("for the plan's arena"));
  CHECK_THROWS_WITH(PageBuffer(INT64_MAX / 2, 0.0f, "the plan's arena"),
                    Catch::Contains("more than the address space") && Catch::Contains("the plan's arena"));
}
