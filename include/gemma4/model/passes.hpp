#pragma once
// The forward pass (model/forward-inl.h) and the draft step (model/draft-inl.h) of every
// SIMD target this program is built for, and the choice among them: the one place where
// Highway's target code meets the model's types. Each pass picks its integer dot product
// once, when it is chosen (WithChosenIntDot, ops/int_dot-inl.h).
//
// Header-only use: model/session.hpp includes this file, so every translation unit that
// makes a Session compiles the passes of the variants it uses. A program with many such
// files may compile them once instead: define GEMMA4_EXTERN_PASSES=1 everywhere, and in
// one translation unit per variant include this file and instantiate
// choose_forward_pass<V> and choose_draft_pass<A> (src/passes.cpp; CMake's
// gemma4_add_passes in this project).
//
// Runtime dispatch (GEMMA4_DYNAMIC_DISPATCH=1 in every translation unit, no -march
// beyond the baseline): the passes are compiled for every target Highway attains
// (HWY_DISABLED_TARGETS trims the list) and each session runs the best one the CPU has.
// This file then runs the foreach_target pass, so a translation unit that includes it
// must do so before any ops/-inl.h header and cannot run a foreach_target pass of its own.

#include <cstddef>

#include "gemma4/model/draft_state.hpp"
#include "gemma4/model/pass_state.hpp"

#ifndef GEMMA4_DYNAMIC_DISPATCH
#define GEMMA4_DYNAMIC_DISPATCH 0
#endif
#if GEMMA4_DYNAMIC_DISPATCH
#if defined(HIGHWAY_HWY_FOREACH_TARGET_H_) || defined(GEMMA4_OPS_OPS_INL_H_)
#error "gemma4: with GEMMA4_DYNAMIC_DISPATCH, include gemma4/model/session.hpp before foreach_target.h and any ops/-inl.h header"
#endif
#define HWY_TARGET_INCLUDE "gemma4/model/passes-inl.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#undef HWY_TARGET_INCLUDE
#endif
#include "gemma4/model/passes-inl.h"

// The forward pass compiled here runs one to two orders of magnitude below the machine's
// speed without optimisation, or for Highway's portable baseline (no -march on x86-64):
// say so at compile time. CMake's gemma4_target_simd() sets both right.
#ifndef GEMMA4_NO_SPEED_WARNINGS
#ifndef __OPTIMIZE__
#warning "gemma4: the forward pass is compiled without optimisation and runs about 100x slower: build with -O2 (CMAKE_BUILD_TYPE=Release, or gemma4_target_simd())"
#endif
#if !GEMMA4_DYNAMIC_DISPATCH && (HWY_STATIC_TARGET & (HWY_SCALAR | HWY_EMU128)) != 0
#warning "gemma4: the forward pass is compiled for Highway's portable target, not the CPU's SIMD: pass -march=native (or the target CPU's), or GEMMA4_DYNAMIC_DISPATCH=1; CMake: gemma4_target_simd(app NATIVE|DISPATCH)"
#endif
#endif

namespace gemma4 {

#if GEMMA4_DYNAMIC_DISPATCH
// The index of the best target this program holds and the CPU has in tables laid out as
// Highway's HWY_EXPORT ones, which keeps to the targets compiled here (and honours
// hwy::SetSupportedTargetsForTest).
inline std::size_t chosen_target_index() {
  hwy::ChosenTarget& chosen = hwy::GetChosenTarget();
  chosen.Update(hwy::SupportedTargets());
  return chosen.GetIndex();
}
#endif

// The forward pass of the best target this program was built for and the CPU has.
template <Variant V>
ForwardPass<V> choose_forward_pass() {
#if GEMMA4_DYNAMIC_DISPATCH
  static constexpr ForwardPass<V> (*kByTarget[])() = {nullptr, HWY_CHOOSE_TARGET_LIST(SimdTargetForwardPass<V>), HWY_CHOOSE_FALLBACK(SimdTargetForwardPass<V>)};
  return kByTarget[chosen_target_index()]();
#else
  return HWY_STATIC_DISPATCH(SimdTargetForwardPass<V>)();
#endif
}

// An assistant's draft step runs on the same target as the forward pass it drafts for.
template <AssistantVariant A>
DraftPass<A> choose_draft_pass() {
#if GEMMA4_DYNAMIC_DISPATCH
  static constexpr DraftPass<A> (*kByTarget[])() = {nullptr, HWY_CHOOSE_TARGET_LIST(SimdTargetDraftPass<A>), HWY_CHOOSE_FALLBACK(SimdTargetDraftPass<A>)};
  return kByTarget[chosen_target_index()]();
#else
  return HWY_STATIC_DISPATCH(SimdTargetDraftPass<A>)();
#endif
}

}  // namespace gemma4
