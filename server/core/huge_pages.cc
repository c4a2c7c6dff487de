#include "server/core/huge_pages.h"

#include <sys/mman.h>

namespace embedding {

void AdviseHugePages(void* data, int64_t bytes) {
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end =
      (begin + static_cast<uintptr_t>(bytes)) & ~(kHugePage - 1);
  if (first >= end) return;
  madvise(reinterpret_cast<void*>(first), end - first, MADV_HUGEPAGE);
}

}  // namespace embedding
