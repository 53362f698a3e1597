#pragma once
// Which pages of the weights stay in this process's memory. What matmuls read is faulted
// in at load, so the first token pays no page faults and the resident size is known up
// front. Tables read a few rows per token (the PLE table, and an embedding whose matmul
// form was converted to int8/int4) are left in the mapping, and the pages their rows
// touched are dropped again every so often.

#include <sys/mman.h>

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "gemma4/base/mapped_file.hpp"

namespace gemma4 {

class PageResidency {
 public:
  // `table` is read a few rows at a time, at random: no readahead, released by rows.
  void read_by_rows(std::span<const std::byte> table) {
    advise(table, MADV_RANDOM);
    tables_.push_back(table);
  }

  // Drops the pages of the tables read by rows: the kernel maps pages around each row
  // read, and without this the resident size would grow with every new token seen, up
  // to the tables' full 4.7 GB (E2B). Other readers just refault.
  void release_rows() const {
    for (std::span<const std::byte> table : tables_) advise(table, MADV_DONTNEED);
  }

  // Faults every page of `ranges` in now, reporting bytes done and total as it goes.
  static void fault_in(const std::vector<std::span<const std::byte>>& ranges,
                       const std::function<void(std::size_t, std::size_t)>& on_progress) {
    std::size_t total = 0, done = 0;
    for (const auto& range : ranges) total += range.size();
    for (const auto& range : ranges) {
      prefault(range);
      done += range.size();
      if (on_progress) on_progress(done, total);
    }
  }

 private:
  std::vector<std::span<const std::byte>> tables_;
};

// When a pass drops the pages of the tables read by rows: every kEvery tokens it looked
// up. Dropping pages costs a TLB shootdown on every core, so not every token; the bound
// keeps what the tables add to the resident size small. One per pass state: the weights
// are shared read-only.
class RowRelease {
 public:
  explicit RowRelease(const PageResidency& residency) : residency_(&residency) {}
  void looked_up(int tokens) {
    since_release_ += tokens;
    if (since_release_ < kEvery) return;
    residency_->release_rows();
    since_release_ = 0;
  }

 private:
  static constexpr int kEvery = 32;
  const PageResidency* residency_;
  int since_release_ = 0;
};

}  // namespace gemma4
