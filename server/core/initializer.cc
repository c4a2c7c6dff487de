#include "server/core/initializer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace embedding {
namespace {

// SplitMix64's finaliser: a bijective mix with full avalanche.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Two independent uniform doubles in (0, 1] for one (seed, row, key).
void UniformPair(uint64_t seed, int64_t row, int64_t column, double* u1,
                 double* u2) {
  const uint64_t key =
      Mix(Mix(seed) ^ Mix(static_cast<uint64_t>(row)) * 0x2545f4914f6cdd1dull ^
          static_cast<uint64_t>(column));
  const uint64_t second = Mix(key ^ 0xda942042e4dd58b5ull);
  constexpr double kScale = 0x1p-53;
  *u1 = (static_cast<double>(key >> 11) + 1.0) * kScale;
  *u2 = (static_cast<double>(second >> 11) + 1.0) * kScale;
}

}  // namespace

void FillRow(const InitializerSpec& init, uint64_t seed, int64_t global_row,
             int64_t dim, float* out) {
  double u1, u2;
  switch (init.kind) {
    case InitializerSpec::Kind::kConstant:
      std::fill_n(out, dim, init.a);
      return;
    case InitializerSpec::Kind::kUniform: {
      // [a, b) holds in double; rounding to float may land on b itself, so
      // such values step back to the float just below it.
      const float below_b =
          init.b > init.a ? std::nextafter(init.b, init.a) : init.a;
      for (int64_t column = 0; column < dim; ++column) {
        UniformPair(seed, global_row, column, &u1, &u2);
        out[column] = std::min(
            below_b,
            static_cast<float>(init.a + (init.b - init.a) * (1.0 - u1)));
      }
      return;
    }
    case InitializerSpec::Kind::kNormal:
      // Box-Muller gives two normals per uniform pair: columns 2k and 2k+1
      // share pair k (cosine and sine), halving the log and sqrt work.
      for (int64_t column = 0; column < dim; column += 2) {
        UniformPair(seed, global_row, column / 2, &u1, &u2);
        const double radius = init.b * std::sqrt(-2.0 * std::log(u1));
        const double angle = 2.0 * std::numbers::pi * u2;
        out[column] = static_cast<float>(init.a + radius * std::cos(angle));
        if (column + 1 < dim) {
          out[column + 1] =
              static_cast<float>(init.a + radius * std::sin(angle));
        }
      }
      return;
  }
}

}  // namespace embedding
