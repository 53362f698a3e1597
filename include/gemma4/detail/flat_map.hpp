#pragma once
// A fixed-capacity open-addressing hash map from 64-bit keys to a small value, for the
// tokenizer's hot lookups (merge pairs, characters, trie edges): one probe sequence in
// one flat array, no node allocation, built once at load time.

#include <bit>
#include <cstdint>
#include <vector>

#include "gemma4/error.hpp"

namespace gemma4::detail {

template <typename Value>
class FlatMap {
 public:
  FlatMap() = default;
  explicit FlatMap(std::size_t expected_size) {
    const std::size_t capacity = std::bit_ceil(expected_size * 2 + 16);  // load factor <= 1/2
    slots_.resize(capacity);
    shift_ = 64 - std::countr_zero(capacity);
  }

  // Inserts or overwrites. The map never grows: callers size it for all their keys.
  void insert_or_assign(std::uint64_t key, const Value& value) {
    if (size_ + 1 > slots_.size() / 2) fail(ErrorKind::kInvalidArgument, "gemma4: FlatMap sized for fewer keys than inserted");
    if (key == kEmpty) fail(ErrorKind::kInvalidArgument, "gemma4: FlatMap key {} is reserved", key);
    Slot& slot = find_slot(key);
    size_ += slot.key == kEmpty ? 1 : 0;
    slot.key = key;
    slot.value = value;
  }

  // Inserts unless `key` is present; returns the value already there, or null.
  const Value* insert_if_absent(std::uint64_t key, const Value& value) {
    if (size_ + 1 > slots_.size() / 2) fail(ErrorKind::kInvalidArgument, "gemma4: FlatMap sized for fewer keys than inserted");
    if (key == kEmpty) fail(ErrorKind::kInvalidArgument, "gemma4: FlatMap key {} is reserved", key);
    Slot& slot = find_slot(key);
    if (slot.key == key) return &slot.value;
    slot = {key, value};
    ++size_;
    return nullptr;
  }

  // Starts loading the slot of `key`, so that a batch of lookups overlaps its cache misses.
  void prefetch(std::uint64_t key) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[home(key)]);
  }

  const Value* find(std::uint64_t key) const {
    if (slots_.empty()) return nullptr;
    const Slot& slot = const_cast<FlatMap*>(this)->find_slot(key);
    return slot.key == key && key != kEmpty ? &slot.value : nullptr;
  }

 private:
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};  // marks a free slot
  struct Slot {
    std::uint64_t key = kEmpty;
    Value value{};
  };

  std::size_t home(std::uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }  // Fibonacci hashing

  Slot& find_slot(std::uint64_t key) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = home(key);
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask;
    return slots_[i];
  }

  std::vector<Slot> slots_;
  std::size_t size_ = 0;
  int shift_ = 64;
};

}  // namespace gemma4::detail
