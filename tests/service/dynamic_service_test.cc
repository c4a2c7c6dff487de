// Dynamic tables through a real server: CreateTable takes the DynamicTable
// options and GetTable reports them with the table's DynamicStats; raw
// int64 ids go through Lookup and PushGradients, whose response counts
// admissions and evictions; bad options and ids are refused precisely and
// change nothing; what dynamic tables cannot do yet is UNIMPLEMENTED.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "embedding/v1/embedding_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/server.h"
#include "tests/service/service_fixture.h"

namespace embedding {
namespace {

constexpr int64_t kDim = 4;
constexpr int64_t kBig = 1000000000000;  // Ids far past any dense table.

class DynamicServiceTest : public testing::ServiceFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StartServer(LoopbackOptions()));
  }

  static v1::CreateTableRequest CreateRequest(const std::string& name,
                                              int64_t capacity) {
    v1::CreateTableRequest request;
    v1::TableSpec* spec = request.mutable_spec();
    spec->set_name(name);
    spec->set_embedding_dim(kDim);
    spec->set_seed(3);
    spec->mutable_dynamic()->set_capacity(capacity);
    return request;
  }

  grpc::Status Create(const v1::CreateTableRequest& request,
                      v1::TableInfo* info) {
    grpc::ClientContext context;
    return stub_->CreateTable(&context, request, info);
  }

  v1::TableInfo Get(const std::string& name) {
    v1::GetTableRequest request;
    request.set_name(name);
    v1::TableInfo info;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->GetTable(&context, request, &info).ok());
    return info;
  }

  grpc::Status Lookup(const std::string& table, const std::vector<int64_t>& ids,
                      std::vector<float>* rows) {
    v1::LookupRequest request;
    request.set_table(table);
    for (int64_t id : ids) request.add_indices(id);
    v1::LookupResponse response;
    grpc::ClientContext context;
    grpc::Status status = stub_->Lookup(&context, request, &response);
    const std::string& data = response.embeddings().data();
    rows->assign(data.size() / sizeof(float), 0.0f);
    // A refused lookup has no rows (and memcpy takes no null pointer).
    if (!data.empty()) std::memcpy(rows->data(), data.data(), data.size());
    return status;
  }

  grpc::Status Push(const std::string& table, const std::vector<int64_t>& ids,
                    v1::PushGradientsResponse* response) {
    v1::PushGradientsRequest request;
    request.set_table(table);
    for (int64_t id : ids) request.add_indices(id);
    const std::vector<float> grad(ids.size() * kDim, 1.0f);
    request.mutable_grad()->add_shape(static_cast<int64_t>(ids.size()));
    request.mutable_grad()->add_shape(kDim);
    request.mutable_grad()->set_data(
        std::string(reinterpret_cast<const char*>(grad.data()),
                    grad.size() * sizeof(float)));
    grpc::ClientContext context;
    return stub_->PushGradients(&context, request, response);
  }
};

TEST_F(DynamicServiceTest, CreateReportsTheOptionsAndStats) {
  v1::CreateTableRequest request = CreateRequest("d", 100);
  request.mutable_spec()->mutable_dynamic()->set_admit_after(0);
  request.mutable_spec()->mutable_dynamic()->set_ttl_pushes(9);
  request.mutable_spec()->set_padding_idx(-1);
  v1::TableInfo info;
  ASSERT_TRUE(Create(request, &info).ok());
  EXPECT_TRUE(info.spec().has_dynamic());
  EXPECT_EQ(info.spec().num_embeddings(), 0);
  EXPECT_EQ(info.spec().padding_idx(), -1);  // Taken as it is.
  EXPECT_EQ(info.spec().dynamic().capacity(), 100);
  EXPECT_EQ(info.spec().dynamic().admit_after(), 1u);
  EXPECT_EQ(info.spec().dynamic().ttl_pushes(), 9);
  EXPECT_EQ(info.dynamic_stats().capacity(), 100);
  EXPECT_EQ(info.dynamic_stats().rows_held(), 0);
  EXPECT_EQ(info.local_rows(), 0);
  // The row index counts against the budget too: more than the rows.
  EXPECT_GT(info.memory_bytes(), 100 * kDim * 4);
}

TEST_F(DynamicServiceTest, PushesAdmitAndEvictAndSayHowMany) {
  v1::TableInfo info;
  ASSERT_TRUE(Create(CreateRequest("d", 2), &info).ok());
  std::vector<float> before;
  ASSERT_TRUE(Lookup("d", {kBig, -kBig}, &before).ok());
  v1::PushGradientsResponse response;
  ASSERT_TRUE(Push("d", {kBig, -kBig, kBig}, &response).ok());
  EXPECT_EQ(response.rows_updated(), 2);
  EXPECT_EQ(response.rows_admitted(), 2);
  EXPECT_EQ(response.rows_evicted(), 0);
  ASSERT_TRUE(Push("d", {kBig + 1}, &response).ok());
  EXPECT_EQ(response.rows_admitted(), 1);
  EXPECT_EQ(response.rows_evicted(), 1);
  const v1::TableInfo after = Get("d");
  EXPECT_EQ(after.local_rows(), 2);
  EXPECT_EQ(after.dynamic_stats().rows_held(), 2);
  EXPECT_EQ(after.dynamic_stats().admissions(), 3);
  EXPECT_EQ(after.dynamic_stats().evictions(), 1);
  EXPECT_EQ(after.dynamic_stats().absent_rows_looked_up(), 2);
  // kBig was pushed first: the least recently pushed, so it was evicted
  // and reads its initial values again; -kBig holds its stepped row.
  std::vector<float> now;
  ASSERT_TRUE(Lookup("d", {kBig, -kBig}, &now).ok());
  EXPECT_EQ(std::vector<float>(now.begin(), now.begin() + kDim),
            std::vector<float>(before.begin(), before.begin() + kDim));
  EXPECT_NE(std::vector<float>(now.begin() + kDim, now.end()),
            std::vector<float>(before.begin() + kDim, before.end()));
}

TEST_F(DynamicServiceTest, BadOptionsAreInvalidArgument) {
  v1::TableInfo info;
  v1::CreateTableRequest request = CreateRequest("d", 0);
  ExpectError(Create(request, &info), grpc::StatusCode::INVALID_ARGUMENT,
              "dynamic capacity must be in [1, 1099511627776], got 0");
  request = CreateRequest("d", 10);
  request.mutable_spec()->set_num_embeddings(10);
  ExpectError(Create(request, &info), grpc::StatusCode::INVALID_ARGUMENT,
              "num_embeddings must be 0 for a dynamic table");
  request = CreateRequest("d", 10);
  request.mutable_spec()->mutable_dynamic()->set_eviction(
      static_cast<v1::DynamicTable::Eviction>(5));
  ExpectError(Create(request, &info), grpc::StatusCode::INVALID_ARGUMENT,
              "unknown dynamic eviction 5");
  request = CreateRequest("d", 10);
  request.mutable_initial_weights()->add_shape(1);
  request.mutable_initial_weights()->add_shape(kDim);
  request.mutable_initial_weights()->set_data(std::string(kDim * 4, '\0'));
  ExpectError(Create(request, &info), grpc::StatusCode::INVALID_ARGUMENT,
              "a dynamic table takes no initial_weights");
  v1::ListTablesRequest list;
  v1::ListTablesResponse tables;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->ListTables(&context, list, &tables).ok());
  EXPECT_EQ(tables.tables_size(), 0);
}

TEST_F(DynamicServiceTest, ReservedIdIsRefusedAndChangesNothing) {
  v1::TableInfo info;
  ASSERT_TRUE(Create(CreateRequest("d", 10), &info).ok());
  const int64_t reserved = std::numeric_limits<int64_t>::min();
  std::vector<float> rows;
  ExpectError(Lookup("d", {1, reserved}, &rows),
              grpc::StatusCode::INVALID_ARGUMENT,
              "index -9223372036854775808 at position 1 is reserved");
  v1::PushGradientsResponse response;
  ExpectError(Push("d", {5, reserved}, &response),
              grpc::StatusCode::INVALID_ARGUMENT, "is reserved");
  const v1::TableInfo after = Get("d");
  EXPECT_EQ(after.version(), 0);
  EXPECT_EQ(after.dynamic_stats().rows_held(), 0);
}

// Bags pool a dynamic table's rows (an absent id its initial values);
// WriteRows by id admits rows (an import), while a range write is refused:
// a dynamic table has no row range.
TEST_F(DynamicServiceTest, BagsAndWritesByIdServeDynamicTables) {
  v1::TableInfo info;
  ASSERT_TRUE(Create(CreateRequest("d", 10), &info).ok());
  const int64_t id = int64_t{1} << 45;
  std::vector<float> initial;
  ASSERT_TRUE(Lookup("d", {id}, &initial).ok());
  v1::LookupBagRequest bag;
  bag.set_table("d");
  bag.add_indices(id);
  bag.add_offsets(0);
  bag.set_mode(v1::BAG_MODE_SUM);
  v1::LookupBagResponse pooled;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->LookupBag(&context, bag, &pooled).ok());
  std::vector<float> sum(kDim);
  ASSERT_EQ(pooled.embeddings().data().size(), kDim * sizeof(float));
  std::memcpy(sum.data(), pooled.embeddings().data().data(),
              kDim * sizeof(float));
  EXPECT_EQ(sum, initial);

  const std::vector<float> values = {1.5f, -2.0f, 0.25f, 8.0f};
  v1::WriteRowsRequest write;
  write.set_table("d");
  write.add_indices(id);
  write.mutable_values()->add_shape(1);
  write.mutable_values()->add_shape(kDim);
  write.mutable_values()->set_data(std::string(
      reinterpret_cast<const char*>(values.data()), kDim * sizeof(float)));
  v1::WriteRowsResponse written;
  grpc::ClientContext write_context;
  ASSERT_TRUE(stub_->WriteRows(&write_context, write, &written).ok());
  std::vector<float> row;
  ASSERT_TRUE(Lookup("d", {id}, &row).ok());
  EXPECT_EQ(row, values);
  EXPECT_EQ(Get("d").dynamic_stats().rows_held(), 1);

  write.clear_indices();
  grpc::ClientContext range_context;
  ExpectError(stub_->WriteRows(&range_context, write, &written),
              grpc::StatusCode::INVALID_ARGUMENT, "no row range");
  EXPECT_EQ(Get("d").dynamic_stats().rows_held(), 1);
}

}  // namespace
}  // namespace embedding
