// The optimizer kernels against reference updates written here in double
// precision from the published formulas (torch.optim docs and source for
// SGD, Adagrad and SparseAdam; FBGEMM for row-wise Adagrad; TensorFlow's
// ApplyFtrl / Keras Ftrl for FTRL-Proximal, McMahan et al. 2013). Fast unit
// checks; the comparison with torch itself is in tests/conformance.
#include "server/core/optimizer.h"

#include <cmath>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;

constexpr int64_t kDim = 5;

// A deterministic gradient for step t, mixing signs and sizes.
std::vector<float> Grad(int64_t t) {
  std::vector<float> grad(kDim);
  for (int64_t d = 0; d < kDim; ++d) {
    grad[d] = static_cast<float>(0.7 * std::sin(3.0 * t + 1.3 * d));
  }
  return grad;
}

std::vector<float> InitialWeights() {
  std::vector<float> weights(kDim);
  for (int64_t d = 0; d < kDim; ++d) weights[d] = 0.25f * d - 0.5f;
  return weights;
}

// One row of a table: weights and optimizer state, as the table lays them.
struct Row {
  explicit Row(const OptimizerSpec& spec)
      : weights(InitialWeights()),
        state(OptimizerStateWidth(spec.kind, kDim), -1.0f) {
    InitializeOptimizerState(spec, kDim, state.data());
  }

  // Applies the table's step `step` to this row.
  void Step(const OptimizerSpec& spec, int64_t step,
            std::optional<float> lr_override = std::nullopt) {
    const std::vector<float> grad = Grad(step);
    ApplyOptimizerRow(spec, MakeStepParams(spec, step, lr_override), kDim,
                      grad.data(), weights.data(), state.data());
  }

  std::vector<float> weights;
  std::vector<float> state;
};

void ExpectClose(const std::vector<float>& got,
                 const std::vector<double>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t d = 0; d < got.size(); ++d) {
    EXPECT_NEAR(got[d], expected[d],
                2e-6 * std::max(1.0, std::fabs(expected[d])))
        << "column " << d;
  }
}

std::vector<double> InitialWeightsInDouble() {
  const std::vector<float> weights = InitialWeights();
  return std::vector<double>(weights.begin(), weights.end());
}

TEST(OptimizerTest, SgdStepsAgainstTheGradient) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kSgd);
  spec.lr = 0.3f;
  Row row(spec);
  EXPECT_TRUE(row.state.empty());
  std::vector<double> w = InitialWeightsInDouble();
  for (int64_t t = 1; t <= 4; ++t) {
    row.Step(spec, t);
    for (int64_t d = 0; d < kDim; ++d) w[d] -= double{spec.lr} * Grad(t)[d];
    ExpectClose(row.weights, w);
  }
}

TEST(OptimizerTest, LearningRateOverrideReplacesTheTablesRate) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kSgd);
  spec.lr = 0.3f;
  Row row(spec);
  row.Step(spec, 1, /*lr_override=*/2.0f);
  std::vector<double> w = InitialWeightsInDouble();
  for (int64_t d = 0; d < kDim; ++d) w[d] -= 2.0 * Grad(1)[d];
  ExpectClose(row.weights, w);
}

// torch.optim.Adagrad, sparse: clr = lr / (1 + (t - 1) * lr_decay);
// sum += g^2; w -= clr * g / (sqrt(sum) + eps).
TEST(OptimizerTest, AdagradDecaysTheRateByTheTablesStep) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kAdagrad);
  spec.lr = 0.5f;
  spec.lr_decay = 0.2f;
  spec.initial_accumulator_value = 0.1f;
  spec.eps = 1e-3f;
  Row row(spec);
  std::vector<double> w = InitialWeightsInDouble();
  std::vector<double> sum(kDim, double{spec.initial_accumulator_value});
  // The row misses step 2: the decay still counts the table's steps.
  for (int64_t t : {1, 3, 4, 5}) {
    row.Step(spec, t);
    const double clr =
        double{spec.lr} / (1.0 + (t - 1) * double{spec.lr_decay});
    for (int64_t d = 0; d < kDim; ++d) {
      const double g = Grad(t)[d];
      sum[d] += g * g;
      w[d] -= clr * g / (std::sqrt(sum[d]) + double{spec.eps});
    }
    ExpectClose(row.weights, w);
    ExpectClose(row.state, sum);
  }
}

// torch.optim.SparseAdam: lazy moments; bias corrections from the step t:
// w -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps).
TEST(OptimizerTest, SparseAdamCorrectsBiasWithTheTablesStep) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kSparseAdam);
  spec.lr = 0.05f;
  spec.beta1 = 0.8f;
  spec.beta2 = 0.95f;
  spec.eps = 1e-6f;
  Row row(spec);
  std::vector<double> w = InitialWeightsInDouble();
  std::vector<double> m(kDim, 0.0), v(kDim, 0.0);
  const double beta1 = spec.beta1, beta2 = spec.beta2;
  for (int64_t t : {1, 3, 4, 7}) {
    row.Step(spec, t);
    const double step_size = double{spec.lr} *
                             std::sqrt(1 - std::pow(beta2, t)) /
                             (1 - std::pow(beta1, t));
    for (int64_t d = 0; d < kDim; ++d) {
      const double g = Grad(t)[d];
      m[d] = beta1 * m[d] + (1 - beta1) * g;
      v[d] = beta2 * v[d] + (1 - beta2) * g * g;
      w[d] -= step_size * m[d] / (std::sqrt(v[d]) + double{spec.eps});
    }
    ExpectClose(row.weights, w);
  }
}

// FBGEMM's row-wise Adagrad: one accumulator per row fed mean(g^2);
// w -= lr * g / (sqrt(sum) + eps).
TEST(OptimizerTest, RowwiseAdagradKeepsOneAccumulatorPerRow) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kRowwiseAdagrad);
  spec.lr = 0.4f;
  spec.eps = 1e-4f;
  Row row(spec);
  ASSERT_EQ(row.state.size(), 1u);
  std::vector<double> w = InitialWeightsInDouble();
  double sum = 0;
  for (int64_t t = 1; t <= 4; ++t) {
    row.Step(spec, t);
    double squares = 0;
    for (float g : Grad(t)) squares += double{g} * g;
    sum += squares / kDim;
    for (int64_t d = 0; d < kDim; ++d) {
      w[d] -= double{spec.lr} * Grad(t)[d] / (std::sqrt(sum) + spec.eps);
    }
    ExpectClose(row.weights, w);
    ExpectClose(row.state, {sum});
  }
}

// FTRL-Proximal per coordinate, as TensorFlow's ApplyFtrl with Keras' beta
// (TF's l2 is the paper's lambda2 / 2, hence 2 * l2), p = -lr_power:
//   n' = n + g^2;  z += g - (n'^p - n^p) / alpha * w;
//   w = |z| <= l1 ? 0 : (sign(z) * l1 - z) / ((beta + n'^p) / alpha + 2 l2).
struct FtrlReference {
  explicit FtrlReference(const OptimizerSpec& spec)
      : spec(spec),
        w(InitialWeightsInDouble()),
        n(kDim, double{spec.initial_accumulator_value}),
        z(kDim, 0.0) {}

  void Step(const std::vector<float>& grad) {
    const double alpha = spec.lr, p = -double{spec.lr_power};
    for (int64_t d = 0; d < kDim; ++d) {
      const double g = grad[d];
      const double n_new = n[d] + g * g;
      z[d] += g - (std::pow(n_new, p) - std::pow(n[d], p)) / alpha * w[d];
      n[d] = n_new;
      if (std::fabs(z[d]) <= spec.l1) {
        w[d] = 0;
      } else {
        const double sign = z[d] > 0 ? 1.0 : -1.0;
        w[d] = (sign * spec.l1 - z[d]) /
               ((spec.beta + std::pow(n_new, p)) / alpha + 2 * double{spec.l2});
      }
    }
  }

  OptimizerSpec spec;
  std::vector<double> w, n, z;
};

void ExpectFtrlMatchesReference(const OptimizerSpec& spec) {
  Row row(spec);
  FtrlReference reference(spec);
  for (int64_t t = 1; t <= 6; ++t) {
    row.Step(spec, t);
    reference.Step(Grad(t));
    ExpectClose(row.weights, reference.w);
    ExpectClose({row.state.begin(), row.state.begin() + kDim}, reference.n);
    ExpectClose({row.state.begin() + kDim, row.state.end()}, reference.z);
  }
}

TEST(OptimizerTest, FtrlMatchesTheReference) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kFtrl);
  spec.lr = 0.2f;
  spec.l1 = 0.05f;
  spec.l2 = 0.1f;
  spec.beta = 0.5f;
  ExpectFtrlMatchesReference(spec);
}

TEST(OptimizerTest, FtrlWithAnotherLearningRatePowerMatchesTheReference) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kFtrl);
  spec.lr = 0.2f;
  spec.lr_power = -0.25f;
  spec.l1 = 0.01f;
  spec.l2 = 0.3f;
  ExpectFtrlMatchesReference(spec);
  spec.lr_power = 0.0f;  // A constant rate: n'^0 - n^0 = 0.
  ExpectFtrlMatchesReference(spec);
}

// By hand, alpha = 1, n = 0, w = 2 everywhere, g = 0.5: n' = 0.25,
// z = 0.5 - (0.5 - 0) * 2 = -0.5. With l1 = 1, |z| <= l1 and w becomes
// exactly 0; with l1 = 0.1, w = (-0.1 + 0.5) / (0.5 / 1) = 0.8.
TEST(OptimizerTest, FtrlL1DrivesAWeightToExactlyZero) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kFtrl);
  spec.lr = 1.0f;
  spec.initial_accumulator_value = 0.0f;
  const std::vector<float> grad(kDim, 0.5f);
  for (auto [l1, expected] : {std::pair{1.0f, 0.0f}, std::pair{0.1f, 0.8f}}) {
    spec.l1 = l1;
    std::vector<float> weights(kDim, 2.0f);
    std::vector<float> state(OptimizerStateWidth(spec.kind, kDim));
    InitializeOptimizerState(spec, kDim, state.data());
    ApplyOptimizerRow(spec, MakeStepParams(spec, 1, std::nullopt), kDim,
                      grad.data(), weights.data(), state.data());
    if (expected == 0.0f) {
      EXPECT_THAT(weights, Each(0.0f)) << "l1 " << l1;
    } else {
      for (float w : weights) EXPECT_FLOAT_EQ(w, expected) << "l1 " << l1;
    }
  }
}

std::vector<float> InitialState(const OptimizerSpec& spec) {
  std::vector<float> state(OptimizerStateWidth(spec.kind, 2), -1.0f);
  InitializeOptimizerState(spec, 2, state.data());
  return state;
}

TEST(OptimizerTest, InitialStateFillsEachSlot) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kSgd);
  EXPECT_TRUE(InitialState(spec).empty());
  spec = DefaultOptimizerSpec(OptimizerKind::kAdagrad);
  spec.initial_accumulator_value = 0.5f;  // sum.
  EXPECT_THAT(InitialState(spec), ElementsAre(0.5f, 0.5f));
  spec = DefaultOptimizerSpec(OptimizerKind::kSparseAdam);  // exp_avg, _sq.
  EXPECT_THAT(InitialState(spec), ElementsAre(0, 0, 0, 0));
  spec = DefaultOptimizerSpec(OptimizerKind::kRowwiseAdagrad);  // One sum.
  EXPECT_THAT(InitialState(spec), ElementsAre(0));
  spec = DefaultOptimizerSpec(OptimizerKind::kFtrl);
  // accumulator at TensorFlow's default 0.1, then linear at 0.
  EXPECT_THAT(InitialState(spec), ElementsAre(0.1f, 0.1f, 0, 0));
}

}  // namespace
}  // namespace embedding
