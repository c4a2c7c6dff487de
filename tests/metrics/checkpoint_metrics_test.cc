#include "server/metrics/checkpoint_metrics.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "server/core/table_registry.h"
#include "tests/metrics/metric_testing.h"

namespace embedding {
namespace {

TEST(CheckpointMetricsTest, AgeAndDurationPerTableWithACheckpoint) {
  TableRegistry registry({});
  for (const char* name : {"saved", "restored", "never"}) {
    TableSpec spec;
    spec.name = name;
    spec.num_embeddings = 4;
    spec.embedding_dim = 2;
    ASSERT_TRUE(registry.Create(spec, {}).ok());
  }
  const absl::Time now = absl::FromUnixSeconds(1'000'000);
  CheckpointMetrics metrics(
      &registry,
      [now](const std::string& table) -> std::optional<CheckpointTimes> {
        if (table == "saved") {
          return CheckpointTimes{.began = now - absl::Seconds(30),
                                 .last_save = absl::Milliseconds(250)};
        }
        if (table == "restored") {
          return CheckpointTimes{.began = now - absl::Hours(1)};
        }
        return std::nullopt;
      },
      [now] { return now; });
  const auto families = metrics.Collect();
  EXPECT_EQ(ValueOf(families, "embedding_checkpoint_age_seconds",
                    {{"table", "saved"}}),
            30);
  EXPECT_EQ(ValueOf(families, "embedding_checkpoint_duration_seconds",
                    {{"table", "saved"}}),
            0.25);
  EXPECT_EQ(ValueOf(families, "embedding_checkpoint_age_seconds",
                    {{"table", "restored"}}),
            3600);
  // Restored, not saved by this server: no duration. Never saved: nothing.
  EXPECT_EQ(ValueOf(families, "embedding_checkpoint_duration_seconds",
                    {{"table", "restored"}}),
            -1);
  EXPECT_EQ(ValueOf(families, "embedding_checkpoint_age_seconds",
                    {{"table", "never"}}),
            -1);
}

}  // namespace
}  // namespace embedding
