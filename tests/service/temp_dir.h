// A fresh directory under $TMPDIR (or /tmp), removed with everything in it
// when the object goes: checkpoint directories and .npy files of the
// service and client tests.
//
//   TempDir dir;
//   options.checkpoint_dir = dir.path();
//   const std::string file = dir.File("t.npy");
//
// Thread-compatible.
#ifndef TESTS_SERVICE_TEMP_DIR_H_
#define TESTS_SERVICE_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace embedding::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "embedding-test-XXXXXX")
            .string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Empty if the directory could not be made (tests then fail on it).
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

 private:
  std::string path_;
};

}  // namespace embedding::testing

#endif  // TESTS_SERVICE_TEMP_DIR_H_
