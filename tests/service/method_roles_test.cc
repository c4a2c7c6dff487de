#include "server/security/method_roles.h"

#include <gtest/gtest.h>

#include "embedding/v1/embedding_service.pb.h"

namespace embedding {
namespace {

// A new RPC must get a role in the table, or it would need admin silently.
TEST(MethodRolesTest, EveryEmbeddingServiceMethodHasARole) {
  const google::protobuf::ServiceDescriptor* service =
      v1::TableSpec::descriptor()->file()->FindServiceByName(
          "EmbeddingService");
  ASSERT_NE(service, nullptr);
  ASSERT_GT(service->method_count(), 0);
  for (int i = 0; i < service->method_count(); ++i) {
    EXPECT_TRUE(MethodRole(service->method(i)->name()).has_value())
        << service->method(i)->name() << " has no role in method_roles.cc";
  }
}

TEST(MethodRolesTest, ReadersReadTrainersWriteRowsAdminsManageTables) {
  for (const char* method : {"Lookup", "LookupBag", "LookupStream", "GetTable",
                             "ListTables", "ReadRows"}) {
    EXPECT_EQ(RequiredRole(method), Role::kReader) << method;
  }
  for (const char* method :
       {"PushGradients", "PushBagGradients", "WriteRows"}) {
    EXPECT_EQ(RequiredRole(method), Role::kTrainer) << method;
  }
  for (const char* method :
       {"CreateTable", "DeleteTable", "SetOptimizer", "SaveCheckpoint"}) {
    EXPECT_EQ(RequiredRole(method), Role::kAdmin) << method;
  }
}

TEST(MethodRolesTest, MethodMissingFromTheTableNeedsAdmin) {
  EXPECT_EQ(MethodRole("DropEverything"), std::nullopt);
  EXPECT_EQ(RequiredRole("DropEverything"), Role::kAdmin);
}

TEST(MethodRolesTest, RolesAreOrderedAndNamed) {
  EXPECT_LT(Role::kNone, Role::kReader);
  EXPECT_LT(Role::kReader, Role::kTrainer);
  EXPECT_LT(Role::kTrainer, Role::kAdmin);
  for (Role role : {Role::kReader, Role::kTrainer, Role::kAdmin}) {
    EXPECT_EQ(ParseRole(RoleName(role)), role);
  }
  EXPECT_EQ(ParseRole("none"), std::nullopt);
}

}  // namespace
}  // namespace embedding
