// Text in and out of embedding_cli: parses the comma lists, names and specs
// given on the command line and formats tables, rows and optimizers for
// people to read. Optimizers are parsed, printed and described from the
// optimizer table (common/optimizer_kinds.h), so a new optimizer needs no
// edit here.
//
//   absl::StatusOr<std::vector<int64_t>> indices =
//       ParseInt64List("indices", "1,2,3");
//   std::cout << FormatRow("1", rows.data) << "\n";  // "1: 0.5 -1.25 3"
//   absl::StatusOr<v1::Optimizer> ftrl =
//       BuildOptimizer("ftrl", {{"l1", "0.5"}});
//
// Thread-safe (pure functions).
#ifndef CLIENT_CPP_CLI_TEXT_H_
#define CLIENT_CPP_CLI_TEXT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "embedding/v1/embedding_service.pb.h"

namespace embedding::cli {

// Parses "1,2,-3" (spaces allowed, empty text is an empty list).
// INVALID_ARGUMENT naming `flag` and the bad element otherwise.
absl::StatusOr<std::vector<int64_t>> ParseInt64List(absl::string_view flag,
                                                    absl::string_view text);
absl::StatusOr<std::vector<float>> ParseFloatList(absl::string_view flag,
                                                  absl::string_view text);

// Parses "normal:mean,std", "normal", "uniform:low,high" or "constant:value".
absl::StatusOr<v1::Initializer> ParseInitializer(absl::string_view text);

// "float32", "float16" or "bfloat16", both ways.
absl::StatusOr<v1::DType> ParseDType(absl::string_view text);
absl::string_view DTypeName(v1::DType dtype);

// "sum", "mean" or "max", both ways.
absl::StatusOr<v1::BagMode> ParseBagMode(absl::string_view text);
absl::string_view BagModeName(v1::BagMode mode);

// "lru" or "lfu" (a dynamic table's eviction policy), both ways.
absl::StatusOr<v1::DynamicTable::Eviction> ParseEviction(
    absl::string_view text);
absl::string_view EvictionName(v1::DynamicTable::Eviction eviction);

// A hyper-parameter given on the command line as --NAME=VALUE.
struct ParamFlag {
  std::string name;
  std::string value;
};

// True when `name` is a hyper-parameter of some optimizer in the table.
bool IsHyperParameter(absl::string_view name);

// The optimizer called `name` with the table's defaults, overridden by
// `params` in order (the last of a repeated name wins). INVALID_ARGUMENT for
// an unknown name, a parameter that is not the optimizer's (naming it) or a
// value that is not a number. Ranges are the server's to check.
absl::StatusOr<v1::Optimizer> BuildOptimizer(
    absl::string_view name, absl::Span<const ParamFlag> params);

// Parses the value of --`flag`. INVALID_ARGUMENT naming it otherwise.
absl::StatusOr<float> ParseFloatFlag(absl::string_view flag,
                                     absl::string_view text);

// Shortest text that reads back as the same float ("0.1", "-2", "1e-08").
std::string FormatFloat(float value);

// "label: v0 v1 ...".
std::string FormatRow(absl::string_view label, absl::Span<const float> row);

// "[3, 4]".
std::string FormatShape(absl::Span<const int64_t> shape);

// "1,2,3": the form the list flags accept.
std::string FormatInt64List(absl::Span<const int64_t> values);

// Every hyper-parameter of the optimizer's kind, unset ones at the table's
// defaults: "sgd(lr=0.1)", "ftrl(lr=0.01, lr_power=-0.5, l1=0.5, ...)".
std::string FormatOptimizer(const v1::Optimizer& optimizer);

// The optimizers of the table, one block each: name, what it matches, and a
// "--PARAM=DEFAULT  help" line per hyper-parameter (for --help).
std::string OptimizerHelp();

// "normal(mean=0, std=1)", ...
std::string FormatInitializer(const v1::Initializer& initializer);

// "capacity=100, admit_after=1, eviction=lru, ttl_pushes=none".
std::string FormatDynamic(const v1::DynamicTable& dynamic);

// One "key: value" line per field of the spec and counters; a dynamic
// table's "dynamic" line (FormatDynamic) stands in for num_embeddings, and
// its DynamicStats follow, one line each.
std::string FormatTableInfo(const v1::TableInfo& info);

// "version 7, incremental, 2026-11-27T12:35:25.123456+00:00, PATH".
std::string FormatCheckpoint(const v1::CheckpointInfo& checkpoint);

// "saved NAME: version V, N rows, B bytes, full|incremental, PATH".
std::string FormatSavedCheckpoint(
    const v1::SaveCheckpointResponse::Saved& saved);

// A table with one line per table under a header, or "no tables". A
// dynamic table's ROWS are "HELD/CAPACITY" (e.g. "12/300").
std::string FormatTableList(absl::Span<const v1::TableInfo> tables);

}  // namespace embedding::cli

#endif  // CLIENT_CPP_CLI_TEXT_H_
