#pragma once
// The checkout whose data files the tests and benchmarks read: defined in the source file
// CMake generates from cmake/source_dir.cpp.in (library gemma4_source_dir).
namespace gemma4::checkout {
extern const char kSourceDir[];
}  // namespace gemma4::checkout
