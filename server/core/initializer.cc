#include "server/core/initializer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "absl/base/attributes.h"
#include "absl/strings/str_cat.h"
#include "common/hash64.h"

namespace embedding {
namespace {

// Two independent uniform doubles in (0, 1] for one (seed, row, key): each
// is (k + 1) * 2^-53 for a 53-bit k, so never below
// internal::kSmallestUniform.
void UniformPair(uint64_t seed, int64_t row, int64_t column, double* u1,
                 double* u2) {
  const uint64_t key = SplitMix64(SplitMix64(seed) ^
                                  SplitMix64(static_cast<uint64_t>(row)) *
                                      0x2545f4914f6cdd1dull ^
                                  static_cast<uint64_t>(column));
  const uint64_t second = SplitMix64(key ^ 0xda942042e4dd58b5ull);
  *u1 = (static_cast<double>(key >> 11) + 1.0) * internal::kSmallestUniform;
  *u2 = (static_cast<double>(second >> 11) + 1.0) * internal::kSmallestUniform;
}

// sqrt(-2 ln u): the Box-Muller radius of a standard normal, largest at the
// smallest u.
double UnitRadius(double u) { return std::sqrt(-2.0 * std::log(u)); }

// internal::NormalPair, here so that FillRow's loop inlines it.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::pair<float, float> BoxMuller(
    const InitializerSpec& init, double u1, double u2) {
  const double radius = double{init.b} * UnitRadius(u1);
  const double angle = 2.0 * std::numbers::pi * u2;
  return {static_cast<float>(init.a + radius * std::cos(angle)),
          static_cast<float>(init.a + radius * std::sin(angle))};
}

}  // namespace

namespace internal {

std::pair<float, float> NormalPair(const InitializerSpec& init, double u1,
                                   double u2) {
  return BoxMuller(init, u1, u2);
}

}  // namespace internal

double MaxAbsStandardNormal() {
  // |cos| and |sin| are at most 1, so |z| <= the largest radius.
  return UnitRadius(internal::kSmallestUniform);
}

absl::Status CheckInitializerStaysFinite(const InitializerSpec& init) {
  if (init.kind != InitializerSpec::Kind::kNormal) return absl::OkStatus();
  // In double, as FillRow computes. A result at most the largest float
  // (give or take the few ulps of double rounding, far below float's half
  // ulp there) rounds to a finite float.
  constexpr double kLargestFloat = std::numeric_limits<float>::max();
  const double largest =
      std::fabs(double{init.a}) + MaxAbsStandardNormal() * double{init.b};
  if (largest <= kLargestFloat) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("normal initializer (mean ", init.a, ", std ", init.b,
                   ") can draw values beyond float32's range: |mean| + ",
                   MaxAbsStandardNormal(), " * std must be at most ",
                   std::numeric_limits<float>::max()));
}

void FillRow(const InitializerSpec& init, uint64_t seed, int64_t global_row,
             int64_t dim, float* out) {
  double u1, u2;
  switch (init.kind) {
    case InitializerSpec::Kind::kConstant:
      std::fill_n(out, dim, init.a);
      return;
    case InitializerSpec::Kind::kUniform: {
      // [a, b) holds in double (b - a is computed there: in float it can
      // overflow); rounding to float may land on b itself, so such values
      // step back to the float just below it.
      const float below_b =
          init.b > init.a ? std::nextafter(init.b, init.a) : init.a;
      const double low = init.a;
      const double width = double{init.b} - low;
      for (int64_t column = 0; column < dim; ++column) {
        UniformPair(seed, global_row, column, &u1, &u2);
        out[column] =
            std::min(below_b, static_cast<float>(low + width * (1.0 - u1)));
      }
      return;
    }
    case InitializerSpec::Kind::kNormal:
      // Box-Muller gives two normals per uniform pair: columns 2k and 2k+1
      // share pair k (cosine and sine), halving the log and sqrt work.
      for (int64_t column = 0; column < dim; column += 2) {
        UniformPair(seed, global_row, column / 2, &u1, &u2);
        const auto [cosine, sine] = BoxMuller(init, u1, u2);
        out[column] = cosine;
        if (column + 1 < dim) out[column + 1] = sine;
      }
      return;
  }
}

}  // namespace embedding
