// Text in and out of embedding_cli: parses the comma lists and specs given on
// the command line and formats tables and rows for people to read.
//
//   std::vector<int64_t> indices;
//   absl::Status status = ParseList("indices", "1,2,3", &indices);
//   std::cout << FormatRow("1", rows.data) << "\n";  // "1: 0.5 -1.25 3"
//
// Thread-safe (pure functions).
#ifndef CLIENT_CPP_CLI_TEXT_H_
#define CLIENT_CPP_CLI_TEXT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "embedding/v1/embedding_service.pb.h"

namespace embedding::cli {

// Parses "1,2,-3" into `out` (spaces allowed, empty text is an empty list).
// INVALID_ARGUMENT naming `flag` and the bad element otherwise.
absl::Status ParseList(absl::string_view flag, absl::string_view text,
                       std::vector<int64_t>* out);
absl::Status ParseList(absl::string_view flag, absl::string_view text,
                       std::vector<float>* out);

// Parses "normal:mean,std", "normal", "uniform:low,high" or "constant:value".
absl::StatusOr<v1::Initializer> ParseInitializer(absl::string_view text);

// Parses "float32", "float16" or "bfloat16".
absl::StatusOr<v1::DType> ParseDType(absl::string_view text);

// Parses "sum", "mean" or "max".
absl::StatusOr<v1::BagMode> ParseBagMode(absl::string_view text);

// Optimizer hyper-parameters as given on the command line; unset ones keep
// the server's defaults.
struct OptimizerFlags {
  std::string kind;  // sgd | adagrad | sparse_adam | rowwise_adagrad
  std::optional<float> lr;
  std::optional<float> lr_decay;
  std::optional<float> initial_accumulator_value;
  std::optional<float> eps;
  std::optional<float> beta1;
  std::optional<float> beta2;
};

// Builds the Optimizer message. INVALID_ARGUMENT for an unknown kind or a
// hyper-parameter the kind does not have (e.g. --beta1 with sgd).
absl::StatusOr<v1::Optimizer> BuildOptimizer(const OptimizerFlags& flags);

// Shortest text that reads back as the same float ("0.1", "-2", "1e-08").
std::string FormatFloat(float value);

// "label: v0 v1 ...".
std::string FormatRow(absl::string_view label, absl::Span<const float> row);

// "[3, 4]".
std::string FormatShape(absl::Span<const int64_t> shape);

// "1,2,3": the form the list flags accept.
std::string FormatInt64List(absl::Span<const int64_t> values);

// "sgd(lr=0.1)", "adagrad(lr=0.01, lr_decay=0, ...)".
std::string FormatOptimizer(const v1::Optimizer& optimizer);

// "normal(mean=0, std=1)", ...
std::string FormatInitializer(const v1::Initializer& initializer);

// One "key: value" line per field of the spec and counters.
std::string FormatTableInfo(const v1::TableInfo& info);

// A table with one line per table under a header, or "no tables".
std::string FormatTableList(absl::Span<const v1::TableInfo> tables);

}  // namespace embedding::cli

#endif  // CLIENT_CPP_CLI_TEXT_H_
