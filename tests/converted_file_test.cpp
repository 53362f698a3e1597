// Converted weights files: int8/int4 matrices saved once and mapped at later loads give
// the same bits as converting, and a file that does not fit the checkpoint, the
// variant, the format or the build is refused with a message naming why.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>

#include "gemma4/tiny.hpp"
#include "gemma4/weights/load.hpp"
#include "gemma4/testing/synthetic.hpp"
#include "session_support.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;
using Catch::Matchers::Contains;

namespace {

// `path` with the first occurrence of `from` replaced by `to`, of the same length.
void patch_file(const std::filesystem::path& path, const std::string& from, const std::string& to) {
  REQUIRE(from.size() == to.size());
  std::string bytes = read_file(path);
  const std::size_t at = bytes.find(from);
  REQUIRE(at != std::string::npos);
  bytes.replace(at, from.size(), to);
  write_file(path, bytes);
}

// Where a safetensors file's data section starts.
std::size_t data_start(const std::filesystem::path& path) {
  const std::string bytes = read_file(path);
  std::uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = header << 8 | static_cast<std::uint8_t>(bytes[i]);
  return 8 + header;
}

// Where tensor `name`'s bytes start in a safetensors file.
std::size_t tensor_offset(const std::filesystem::path& path, const std::string& name) {
  const std::string bytes = read_file(path);
  const std::size_t start = data_start(path);
  const auto header = nlohmann::json::parse(bytes.substr(8, start - 8));
  return start + header.at(name).at("data_offsets").at(0).get<std::size_t>();
}

}  // namespace

TEMPLATE_TEST_CASE("a converted file gives the bits of converting at load time", "[converted]", TinyE2B, TinyE4B) {
  TempDir dir;
  write_synthetic_checkpoint(TestType::config, dir.path(), {.seed = 11});
  std::vector<int> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back((i * 37 + 2) % static_cast<int>(TestType::config.vocab_size));
  for (WeightFormat format : {WeightFormat::kInt8, WeightFormat::kInt4}) {
    const auto file = dir / fmt::format("converted.{}", weight_format_name(format));
    const Weights<TestType> converted(dir.path(), {.format = format});
    converted.save_converted(file);
    const Weights<TestType> mapped(dir.path(), {.format = format, .converted_file = file});
    CHECK(first_difference(all_logits(converted, tokens), all_logits(mapped, tokens)) == "");
    const LoadReport &a = converted.report(), &b = mapped.report();
    CHECK(a.converted_file.empty());
    CHECK(b.converted_file == file);
    CHECK(b.quantized_bytes == a.quantized_bytes);
    CHECK(b.bytes_per_token == a.bytes_per_token);
    CHECK(b.kept_int8 == a.kept_int8);
    // One page of header, then the matrices' bytes as they are in memory.
    CHECK(std::filesystem::file_size(file) >= a.quantized_bytes);
    CHECK(std::filesystem::file_size(file) <= a.quantized_bytes + 4096 + 64 * a.tensors_used);
  }
}

TEST_CASE("a converted file that does not fit is refused", "[converted]") {
  TempDir dir, other;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 11});
  const auto file = dir / "converted.int8";
  Weights<TinyE2B>(dir.path(), {.format = WeightFormat::kInt8}).save_converted(file);
  const auto load = [&](WeightFormat format, const std::filesystem::path& path) {
    return Weights<TinyE2B>(dir.path(), {.format = format, .converted_file = path});
  };
  REQUIRE_NOTHROW(load(WeightFormat::kInt8, file));

  SECTION("asked for another format") {
    CHECK_THROWS_WITH(load(WeightFormat::kInt4, file), Contains("holds int8 weights, but int4 were asked for"));
    CHECK_THROWS_WITH(load(WeightFormat::kBF16, file), Contains("holds int8 or int4 weights; ask for one of them"));
  }
  SECTION("converted from another checkpoint of the same shape") {
    write_synthetic_checkpoint(TinyE2B::config, other.path(), {.seed = 12});
    CHECK_THROWS_WITH(Weights<TinyE2B>(other.path(), {.format = WeightFormat::kInt8, .converted_file = file}),
                      Contains("converted from another checkpoint than " + other.path().string()) &&
                          Contains("convert it again"));
  }
  SECTION("the checkpoint changed in one matrix since") {
    // A large matrix (the fingerprint samples windows of it) and a small one (all of it).
    for (const std::string name : {"embed_tokens.weight", "layers.2.self_attn.k_proj.weight"}) {
      const auto checkpoint = dir / "model.safetensors";
      const std::string original = read_file(checkpoint);
      std::string changed = original;
      changed[tensor_offset(checkpoint, "model.language_model." + name)] ^= 1;
      write_file(checkpoint, changed);
      CHECK_THROWS_WITH(load(WeightFormat::kInt8, file), Contains("converted from another checkpoint"));
      write_file(checkpoint, original);
    }
  }
  SECTION("converted for another variant") {
    write_synthetic_checkpoint(TinyE4B::config, other.path(), {.seed = 11});
    const auto e4b_file = other / "converted.int8";
    Weights<TinyE4B>(other.path(), {.format = WeightFormat::kInt8}).save_converted(e4b_file);
    CHECK_THROWS_WITH(load(WeightFormat::kInt8, e4b_file), Contains("converted for variant tiny-e4b, but the checkpoint is tiny-e2b"));
  }
  SECTION("not a converted file") {
    CHECK_THROWS_WITH(load(WeightFormat::kInt8, dir / "model.safetensors"),
                      Contains("not a gemma4 converted weights file (__metadata__ format is 'pt'"));
    CHECK_THROWS_WITH(load(WeightFormat::kInt8, dir / "missing.int8"), Contains("cannot open"));
  }
  SECTION("packed by a build with another layout") {
    patch_file(file, R"("layout":"1")", R"("layout":"0")");
    CHECK_THROWS_WITH(load(WeightFormat::kInt8, file), Contains("packed with layout version 0, but this build reads version 1"));
  }
  SECTION("truncated") {
    std::filesystem::resize_file(file, std::filesystem::file_size(file) - 64);
    CHECK_THROWS_WITH(load(WeightFormat::kInt8, file), Contains("lie outside the data section"));
  }
  SECTION("a matrix missing, a stranger in its place") {
    patch_file(file, "layers.3.mlp.up_proj", "layers.3.mlp.uq_proj");
    CHECK_THROWS_WITH(load(WeightFormat::kInt8, file), Contains("layers.3.mlp.up_proj.weight: missing") &&
                                                           Contains("layers.3.mlp.uq_proj.weight: not a matrix of this model"));
  }
  SECTION("a matrix of the wrong size") {
    // The first matrix is the LM head, [1024, 128]: 131072 weight bytes, then 4096 of scales.
    patch_file(file, R"("shape":[135168],"data_offsets":[0,135168])", R"("shape":[135104],"data_offsets":[0,135104])");
    CHECK_THROWS_WITH(load(WeightFormat::kInt8, file), Contains("embed_tokens.weight: U8 [135104], expected U8 [135168]"));
  }
  SECTION("a corrupt scale") {
    std::string bytes = read_file(file);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(bytes.data() + data_start(file) + 1024 * 128 + 5 * sizeof(float), &nan, sizeof nan);
    write_file(file, bytes);
    CHECK_THROWS_WITH(load(WeightFormat::kInt8, file), Contains("embed_tokens.weight: row 5 has an invalid scale (corrupt file)"));
  }
  SECTION("bf16 weights have nothing to save") {
    CHECK_THROWS_WITH(Weights<TinyE2B>(dir.path()).save_converted(dir / "bf16"), Contains("only int8 or int4 weights can be saved"));
  }
}

TEST_CASE("an int4 file with a corrupt group scale is refused", "[converted]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 11});
  const auto file = dir / "converted.int4";
  Weights<TinyE2B>(dir.path(), {.format = WeightFormat::kInt4}).save_converted(file);
  // The LM head's second row block, group 1's scale of lane 3: an infinite bf16.
  std::string bytes = read_file(file);
  const std::size_t at = data_start(file) + Int4Layout::block_bytes(128) + Int4Layout::scale(1, 3);
  bytes[at] = '\x80';
  bytes[at + 1] = '\x7f';
  write_file(file, bytes);
  CHECK_THROWS_WITH(Weights<TinyE2B>(dir.path(), {.format = WeightFormat::kInt4, .converted_file = file}),
                    Contains("embed_tokens.weight: row 19 has an invalid scale"));
}
