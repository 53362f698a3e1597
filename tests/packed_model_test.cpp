// Packed models (`gemma4 convert`): a directory that needs nothing else, whose matrices
// are the bits that converting at load makes, whose tables are looked up packed; written
// atomically and deterministically; a directory that does not fit, or is corrupt, is
// refused with a message naming the file, the tensor and why.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "gemma4/testing/logit_agreement.hpp"
#include "gemma4/tiny.hpp"
#include "gemma4/weights/convert.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "session_support.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;
using Catch::Matchers::Contains;

namespace {

// A safetensors file's header, and where tensor `name`'s bytes start in it.
nlohmann::json header_of(const std::filesystem::path& path) {
  const std::string bytes = read_file(path);
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = length << 8 | static_cast<std::uint8_t>(bytes[i]);
  return nlohmann::json::parse(bytes.substr(8, length));
}
std::size_t tensor_offset(const std::filesystem::path& path, const std::string& name) {
  const std::string bytes = read_file(path);
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = length << 8 | static_cast<std::uint8_t>(bytes[i]);
  return 8 + length + header_of(path).at(name).at("data_offsets").at(0).get<std::size_t>();
}

std::vector<int> some_tokens(int vocab) {
  std::vector<int> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back((i * 37 + 2) % vocab);
  return tokens;
}

// The matrices a matmul reads, as packed bytes, in slot order.
template <Variant V>
std::vector<std::span<const std::byte>> packed_matrices(const Weights<V>& w) {
  std::vector<std::span<const std::byte>> all;
  for_each_slot<V>(w.global, w.layers, [&](const auto& slot, const std::string&, const LayerFacts&) {
    using S = std::remove_cvref_t<decltype(slot)>;
    if constexpr (std::is_base_of_v<MatrixView, S> && S::residency == Residency::kInMemory) all.push_back(quantized_matrix(slot.linear)->packed());
  });
  return all;
}

// Each matrix a matmul reads holds the same bytes in a and b.
template <Variant V>
void check_same_matrices(const Weights<V>& a, const Weights<V>& b) {
  const auto ours = packed_matrices(a), theirs = packed_matrices(b);
  REQUIRE(ours.size() == theirs.size());
  for (std::size_t i = 0; i < ours.size(); ++i) {
    INFO("matrix " << i);
    REQUIRE(ours[i].size() == theirs[i].size());
    CHECK(std::memcmp(ours[i].data(), theirs[i].data(), ours[i].size()) == 0);
  }
}

// How many bytes of `range`'s pages are mapped into this process: the present bits of
// /proc/self/pagemap (readable without privileges; the page frames are not needed).
std::size_t mapped_bytes(std::span<const std::byte> range) {
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const int fd = open("/proc/self/pagemap", O_RDONLY);
  REQUIRE(fd >= 0);
  std::size_t mapped = 0;
  const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(range.data());
  for (std::uintptr_t p = start / page; p < (start + range.size() + page - 1) / page; ++p) {
    std::uint64_t entry = 0;
    if (pread(fd, &entry, sizeof entry, static_cast<off_t>(p * sizeof entry)) != sizeof entry) FAIL("cannot read /proc/self/pagemap");
    if (entry >> 63) mapped += page;
  }
  close(fd);
  return mapped;
}

// The checkpoint bytes of the matrices a matmul reads, how many of their pages are mapped
// now, and how many matrices there are.
struct MatrixSources {
  std::size_t bytes = 0, mapped = 0, count = 0;
};
template <Variant V>
MatrixSources matrix_sources(const Weights<V>& w) {
  MatrixSources sources;
  for_each_slot<V>(w.global, w.layers, [&](const auto& slot, const std::string& name, const LayerFacts&) {
    using S = std::remove_cvref_t<decltype(slot)>;
    if constexpr (std::is_base_of_v<MatrixView, S> && S::residency == Residency::kInMemory) {
      const std::span<const std::byte> bytes = w.checkpoint().find(w.report().prefix + name)->bytes;
      sources.bytes += bytes.size();
      sources.mapped += mapped_bytes(bytes);
      ++sources.count;
    }
  });
  return sources;
}

// A tiny checkpoint, and its int8 and int4 packed models, each made once and when first
// needed: the tests below that corrupt or refuse them work on copies (Catch2 runs a test
// case again for each section, and converting is most of its time).
struct TinySource {
  TempDir dir;
  TinySource() { write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 11}); }
};
const TempDir& tiny_source() {
  static const TinySource source;
  return source.dir;
}
struct PackedTiny {
  TempDir int8_dir, int4_dir;
  PackedTiny() {
    convert_checkpoint<TinyE2B>(tiny_source().path(), int8_dir.path(), {.format = WeightFormat::kInt8});
    convert_checkpoint<TinyE2B>(tiny_source().path(), int4_dir.path(), {.format = WeightFormat::kInt4});
  }
};
const PackedTiny& packed_tiny() {
  static const PackedTiny tiny;
  return tiny;
}

// A fresh copy of directory `from`.
struct DirCopy : TempDir {
  explicit DirCopy(const TempDir& from) { std::filesystem::copy(from.path(), path(), std::filesystem::copy_options::recursive); }
};

}  // namespace

TEMPLATE_TEST_CASE("a packed model holds the matrices converting at load makes, and looks its tables up packed", "[packed][host-only]", TinyE2B,
                   TinyE4B) {
  TempDir source, out;
  write_synthetic_checkpoint(TestType::config, source.path(), {.seed = 11, .trained_like = true});
  const auto tokens = some_tokens(TestType::config.vocab_size);
  const WeightFormat format = GENERATE(WeightFormat::kInt8, WeightFormat::kInt4);
  INFO(weight_format_name(format));
  const ConvertReport converted = convert_checkpoint<TestType>(source.path(), out.path(), {.format = format});
  CHECK(converted.copied == std::vector<std::string>{"config.json", "generation_config.json"});
  std::filesystem::remove_all(source.path());  // the packed model needs nothing of it

  const Weights<TestType> packed(out.path());
  const LoadReport& r = packed.report();
  CHECK(r.packed_model);
  CHECK(r.format == format);
  CHECK(r.kept_int8 == converted.kept_int8);
  CHECK(r.unknown.empty());
  CHECK(r.copied_bytes == 0);
  CHECK(Weights<TestType>(out.path(), {.format = format}).report().packed_model);
  // A lookup reads the packed rows: the embedding's are the LM head's.
  REQUIRE(packed.global.embed_tokens.data == nullptr);
  const QuantizedMatrix& head = *quantized_matrix(packed.global.embed_tokens.linear);
  // The PLE table: a row per token and layer.
  const QuantizedMatrix& ple = *quantized_matrix(packed.global.embed_tokens_per_layer.linear);
  CHECK(ple.rows() == std::size_t{TestType::config.vocab_size_per_layer_input} * kNumLayers<TestType>);
  CHECK(ple.cols() == std::size_t{TestType::config.hidden_size_per_layer_input});
  CHECK(ple.format() == format);

  // Every matrix as converting at load makes it, the embedding (the LM head) in int8 in
  // both unless an int4 head is asked for (head_format).
  CHECK(head.format() == WeightFormat::kInt8);
  CHECK((format == WeightFormat::kInt4) == (r.kept_int8.size() == 1 && r.kept_int8[0] == "embed_tokens.weight"));
  write_synthetic_checkpoint(TestType::config, source.path(), {.seed = 11, .trained_like = true});
  const Weights<TestType> at_load(source.path(), {.format = format});
  CHECK(at_load.report().kept_int8 == r.kept_int8);
  // Vectors are f32 in a packed model, bf16 in this checkpoint.
  CHECK(r.bytes_per_token - r.quantized_bytes == 2 * (at_load.report().bytes_per_token - at_load.report().quantized_bytes));
  check_same_matrices(packed, at_load);
  // Only the tables' rounding is new: logits stay close to converting at load, and
  // prefill and decode agree bit for bit as for every format.
  const auto logits = all_logits(packed, tokens);
  const LogitAgreement agreement = compare_logits(all_logits(at_load, tokens), logits, TestType::config.vocab_size);
  CHECK(agreement.mean_kl < 0.03);
  CHECK(first_difference(logits_in_pieces(packed, tokens, {1}), logits) == "");
  // One page of header, the matrices, the PLE table and the vectors.
  const auto size = std::filesystem::file_size(out / "model.safetensors");
  CHECK(size == converted.bytes);
  CHECK(size >= r.quantized_bytes + ple.packed().size());
  CHECK(size <= r.quantized_bytes + ple.packed().size() + kPackedAlignment + 256 * 1024);
}

TEST_CASE("an int4 model may hold its LM head in int4, packed and converted at load alike", "[packed][host-only]") {
  TempDir source, out, other;
  write_synthetic_checkpoint(TinyE2B::config, source.path(), {.seed = 11, .trained_like = true});
  const ConvertReport converted =
      convert_checkpoint<TinyE2B>(source.path(), out.path(), {.format = WeightFormat::kInt4, .head_format = WeightFormat::kInt4});
  CHECK(converted.kept_int8.empty());
  CHECK(header_of(out / "model.safetensors").at("__metadata__").at("head") == "int4");
  const Weights<TinyE2B> packed(out.path());
  CHECK(packed.report().kept_int8.empty());
  // The embedding's rows are looked up from the int4 table too.
  REQUIRE(packed.global.embed_tokens.data == nullptr);
  CHECK(quantized_matrix(packed.global.embed_tokens.linear)->format() == WeightFormat::kInt4);
  const Weights<TinyE2B> at_load(source.path(), {.format = WeightFormat::kInt4, .head_format = WeightFormat::kInt4});
  CHECK(at_load.report().kept_int8.empty());
  check_same_matrices(packed, at_load);
  // What a token reads: the head's int4 bytes in place of its int8 ones.
  const Weights<TinyE2B> int8_head(source.path(), {.format = WeightFormat::kInt4});
  constexpr std::size_t kVocab = TinyE2B::config.vocab_size, kHidden = TinyE2B::config.hidden_size;
  CHECK(int8_head.report().bytes_per_token - at_load.report().bytes_per_token ==
        QuantizedMatrix::storage_bytes(WeightFormat::kInt8, kVocab, kHidden) - QuantizedMatrix::storage_bytes(WeightFormat::kInt4, kVocab, kHidden));
  const auto tokens = some_tokens(TinyE2B::config.vocab_size);
  const auto logits = all_logits(packed, tokens);
  CHECK(compare_logits(all_logits(at_load, tokens), logits, TinyE2B::config.vocab_size).mean_kl < 0.03);
  CHECK(first_difference(logits_in_pieces(packed, tokens, {1}), logits) == "");

  // Loaded with the head it was packed with, or none asked; an int4 head needs int4 weights.
  CHECK_THROWS_WITH(Weights<TinyE2B>(out.path(), {.head_format = WeightFormat::kInt8}),
                    Contains((out / "model.safetensors").string()) && Contains("a packed model with an int4 LM head cannot be loaded with an int8 head"));
  CHECK_THROWS_WITH(Weights<TinyE2B>(source.path(), {.format = WeightFormat::kInt8, .head_format = WeightFormat::kInt4}),
                    Contains("an LM head in int4 needs int4 weights, not int8"));
  CHECK_THROWS_WITH(Weights<TinyE2B>(source.path(), {.head_format = WeightFormat::kInt4}), Contains("an LM head in int4 needs int4 weights, not bf16"));
  CHECK_THROWS_WITH(convert_checkpoint<TinyE2B>(source.path(), other.path(), {.format = WeightFormat::kInt8, .head_format = WeightFormat::kInt4}),
                    Contains("an LM head in int4 needs int4 weights, not int8"));
  CHECK_THROWS_WITH(convert_checkpoint<TinyE2B>(source.path(), other.path(), {.format = WeightFormat::kInt4, .head_format = WeightFormat::kBF16}),
                    Contains("an LM head in bf16 needs int4 weights"));
  CHECK_FALSE(std::filesystem::exists(other / "model.safetensors"));
}

TEST_CASE("an f16 checkpoint converts too: its PLE table, left as stored, is widened as it is packed", "[packed]") {
  TempDir source, out;
  write_synthetic_checkpoint(TinyE2B::config, source.path(), {.dtype = DType::kF16, .seed = 5});
  convert_checkpoint<TinyE2B>(source.path(), out.path(), {.format = WeightFormat::kInt8});
  const Weights<TinyE2B> packed(out.path()), stored(source.path());
  REQUIRE(stored.global.embed_tokens_per_layer.dtype == DType::kF16);
  const QuantizedMatrix& table = *quantized_matrix(packed.global.embed_tokens_per_layer.linear);
  const std::size_t width = table.cols(), rows = table.rows();
  std::vector<float> row(width);
  for (const std::size_t r : {std::size_t{0}, std::size_t{7 * 35 + 3}, rows - 1}) {
    table.dequantize_rows(r, 1, row.data());
    float absmax = 0;
    for (std::size_t c = 0; c < width; ++c) absmax = std::max(absmax, std::fabs(stored.global.embed_tokens_per_layer.at(r * width + c)));
    for (std::size_t c = 0; c < width; ++c) {
      INFO("row " << r << " column " << c);
      REQUIRE(std::fabs(row[c] - stored.global.embed_tokens_per_layer.at(r * width + c)) <= absmax / 127 / 2 * 1.001f);
    }
  }
}

TEST_CASE("converting is deterministic, whatever the threads", "[packed][threads]") {
  TempDir source, a, b;
  write_synthetic_checkpoint(TinyE2B::config, source.path(), {.dtype = DType::kF32, .seed = 3});
  ThreadPool one(1), three(3);
  convert_checkpoint<TinyE2B>(source.path(), a.path(), {.format = WeightFormat::kInt4, .pool = &one});
  convert_checkpoint<TinyE2B>(source.path(), b.path(), {.format = WeightFormat::kInt4, .pool = &three});
  CHECK(read_file(a / "model.safetensors") == read_file(b / "model.safetensors"));
}

TEST_CASE("converting leaves no half model behind, and refuses what it cannot convert", "[packed][host-only]") {
  const PackedTiny& tiny = packed_tiny();
  const TempDir& source = tiny_source();

  SECTION("interrupted") {
    TempDir c;
    const auto interrupt = [](std::size_t done, std::size_t total) {
      if (done > total / 2) throw std::runtime_error("interrupted");
    };
    CHECK_THROWS_WITH(convert_checkpoint<TinyE2B>(source.path(), c.path(), {.format = WeightFormat::kInt8, .on_progress = interrupt}),
                      "interrupted");
    CHECK_FALSE(std::filesystem::exists(c / "model.safetensors"));
    CHECK_FALSE(std::filesystem::exists(c / "model.safetensors.partial"));
    CHECK_THROWS_WITH(Weights<TinyE2B>(c.path()), Contains("no model.safetensors"));
    // A conversion killed outright leaves its partial file, which nothing loads; the next one replaces it.
    write_file(c / "model.safetensors.partial", "half");
    convert_checkpoint<TinyE2B>(source.path(), c.path(), {.format = WeightFormat::kInt4});
    CHECK(read_file(c / "model.safetensors") == read_file(tiny.int4_dir / "model.safetensors"));
    CHECK_FALSE(std::filesystem::exists(c / "model.safetensors.partial"));
  }
  SECTION("what cannot be converted") {
    const DirCopy packed(tiny.int4_dir);
    TempDir out;
    CHECK_THROWS_WITH(convert_checkpoint<TinyE2B>(packed.path(), out / "again", {.format = WeightFormat::kInt8}),
                      Contains("already a packed int4 model; re-quantizing would compound the rounding"));
    CHECK_THROWS_WITH(convert_checkpoint<TinyE2B>(source.path(), packed.path(), {.format = WeightFormat::kInt8}),
                      Contains("already holds a model (model.safetensors)"));
    CHECK_THROWS_WITH(convert_checkpoint<TinyE2B>(source.path(), source.path(), {.format = WeightFormat::kInt8}),
                      Contains("the output directory is the checkpoint's own"));
    CHECK_THROWS_WITH(convert_checkpoint<TinyE2B>(source.path(), out / "x", {.format = WeightFormat::kBF16}), Contains("convert to int8 or int4"));
    CHECK_THROWS_WITH(convert_checkpoint<TinyE4B>(source.path(), out / "x", {.format = WeightFormat::kInt8}),
                      Contains("config.json does not describe tiny-e4b"));
  }
}

// Converting reads each source slice once and drops its pages; but every later read at
// load (the fingerprint's windows, prefaulting the small tensors kept as stored) also
// maps up to 16 neighbouring pages, which must not stay.
TEST_CASE("converting at load leaves no page of the converted matrices' sources mapped", "[packed][host-only]") {
  TempDir source;
  write_synthetic_checkpoint(TinyE2B::config, source.path(), {.seed = 5});
  const MatrixSources as_stored = matrix_sources(Weights<TinyE2B>(source.path()));
  CHECK(as_stored.mapped >= as_stored.bytes * 9 / 10);  // what a matmul reads is faulted in
  for (WeightFormat format : {WeightFormat::kInt8, WeightFormat::kInt4}) {
    INFO(weight_format_name(format));
    const MatrixSources converted = matrix_sources(Weights<TinyE2B>(source.path(), {.format = format}));
    // A page shared with a neighbouring tensor kept in memory may stay: two per matrix.
    CHECK(converted.mapped <= converted.count * 2 * static_cast<std::size_t>(sysconf(_SC_PAGESIZE)));
  }
}

// A corrupt checkpoint's NaN or infinity would round to no level at all.
TEST_CASE("converting refuses a weight that is not finite, naming the checkpoint and tensor", "[packed][host-only]") {
  const DirCopy source(tiny_source());
  TempDir out;
  const auto file = source / "model.safetensors";
  const std::string up = "model.language_model.layers.1.mlp.up_proj.weight";
  const float bad = GENERATE(std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity());
  std::string bytes = read_file(file);
  const std::uint16_t bits = f32_to_bf16(bad);
  std::memcpy(bytes.data() + tensor_offset(file, up) + (17 * std::size_t{TinyE2B::config.hidden_size} + 40) * 2, &bits, 2);
  write_file(file, bytes);
  const std::string what = fmt::format("a weight is {} (weights must be finite)", bad);
  for (WeightFormat format : {WeightFormat::kInt8, WeightFormat::kInt4}) {
    INFO(weight_format_name(format));
    CHECK_THROWS_WITH(Weights<TinyE2B>(source.path(), {.format = format}),
                      Contains(source.path().string()) && Contains("layers.1.mlp.up_proj.weight") && Contains(what));
    CHECK_THROWS_WITH(convert_checkpoint<TinyE2B>(source.path(), out.path(), {.format = format}), Contains(up) && Contains(what));
    CHECK_FALSE(std::filesystem::exists(out / "model.safetensors"));
  }
}

TEST_CASE("a packed model that does not fit or is corrupt is refused, naming the file and tensor", "[packed][host-only]") {
  const DirCopy int8_dir(packed_tiny().int8_dir), int4_dir(packed_tiny().int4_dir);
  const auto file8 = int8_dir / "model.safetensors", file4 = int4_dir / "model.safetensors";
  const std::string embed = "model.language_model.embed_tokens.weight", ple = "model.language_model.embed_tokens_per_layer.weight";
  const auto load8 = [&] { return Weights<TinyE2B>(int8_dir.path()); };
  const auto load4 = [&] { return Weights<TinyE2B>(int4_dir.path()); };
  REQUIRE_NOTHROW(load8());
  // The entry of `name` in the header as the writer spells it.
  const auto entry = [](std::size_t begin, std::size_t bytes) {
    return fmt::format(R"("dtype":"U8","shape":[{}],"data_offsets":[{},{}])", bytes, begin, begin + bytes);
  };

  SECTION("asked for another format") {
    CHECK_THROWS_WITH(Weights<TinyE2B>(int8_dir.path(), {.format = WeightFormat::kInt4}),
                      Contains(file8.string()) && Contains("a packed int8 model cannot be loaded as int4"));
    CHECK_THROWS_WITH(Weights<TinyE2B>(int8_dir.path(), {.format = WeightFormat::kBF16}), Contains("cannot be loaded as bf16"));
    CHECK_THROWS_WITH(Weights<TinyE2B>(int4_dir.path(), {.head_format = WeightFormat::kInt4}),
                      Contains(file4.string()) && Contains("a packed model with an int8 LM head cannot be loaded with an int4 head"));
  }
  SECTION("packed for another variant") {
    patch_file(file8, R"("variant":"tiny-e2b")", R"("variant":"tiny-e4b")");
    CHECK_THROWS_WITH(load8(), Contains("packed for variant tiny-e4b, but config.json describes tiny-e2b"));
  }
  SECTION("a layout version from the future, or the past") {
    patch_file(file8, R"("layout":"2")", R"("layout":"7")");
    CHECK_THROWS_WITH(load8(), Contains(file8.string()) && Contains("written by a newer gemma4 (packed layout version 7, this build reads version 2)"));
    patch_file(file8, R"("layout":"7")", R"("layout":"1")");
    CHECK_THROWS_WITH(load8(), Contains("older layout version 1") && Contains("convert the checkpoint again"));
    patch_file(file8, R"("layout":"1")", R"("layout":"x")");
    CHECK_THROWS_WITH(load8(), Contains("packed layout version 'x' is not a number"));
  }
  SECTION("metadata lacking a field, or with a bad one") {
    patch_file(file8, R"("source":)", R"("sourc_":)");
    CHECK_THROWS_WITH(load8(), Contains("a packed model's __metadata__ lacks 'source'"));
    patch_file(file4, R"("weights":"int4")", R"("weights":"bf16")");
    CHECK_THROWS_WITH(load4(), Contains("packed weights 'bf16' are neither int8 nor int4"));
  }
  SECTION("the LM head's format: absent (written before it was recorded) is int8; a lying or impossible one is refused") {
    patch_file(file4, R"("head":"int8")", R"("heaX":"int8")");
    CHECK(quantized_matrix(load4().global.embed_tokens.linear)->format() == WeightFormat::kInt8);
    patch_file(file4, R"("heaX":"int8")", R"("head":"int4")");
    CHECK_THROWS_WITH(load4(), Contains(embed + ": U8 [135168], expected U8 [") && Contains("(a [1024, 128] int4 matrix with its scales)"));
    patch_file(file8, R"("head":"int8")", R"("head":"int4")");
    CHECK_THROWS_WITH(load8(), Contains(file8.string()) && Contains("an LM head in 'int4' in a packed int8 model"));
    patch_file(file8, R"("head":"int4")", R"("head":"bf16")");
    CHECK_THROWS_WITH(load8(), Contains("an LM head in 'bf16' in a packed int8 model"));
  }
  SECTION("truncated") {
    std::filesystem::resize_file(file4, std::filesystem::file_size(file4) - 64);
    CHECK_THROWS_WITH(load4(), Contains(file4.string()) && Contains("lie outside the data section"));
  }
  SECTION("a tensor missing") {
    patch_file(file8, "layers.3.mlp.up_proj", "layers.3.mlp.uq_proj");
    CHECK_THROWS_WITH(load8(), Contains("model.language_model.layers.3.mlp.up_proj.weight: missing"));
    patch_file(file4, "layers.3.input_layernorm", "layers.3.input_layernorx");
    CHECK_THROWS_WITH(load4(), Contains("layers.3.input_layernorm.weight: missing"));
  }
  SECTION("an int8 matrix whose scale table is short of its rows") {
    // The embedding comes first: [1024, 128] int8 weights, then 1024 f32 scales.
    const std::size_t bytes = 1024 * 128 + 1024 * 4;
    patch_file(file8, entry(0, bytes), entry(0, bytes - 64));
    CHECK_THROWS_WITH(load8(), Contains(file8.parent_path().string()) &&
                                   Contains(embed + ": U8 [135104], expected U8 [135168] (a [1024, 128] int8 matrix with its scales)"));
  }
  SECTION("an embedding or PLE table of another vocabulary") {
    const std::size_t block = QuantizedMatrix::storage_bytes(WeightFormat::kInt8, kRowBlock, 128);
    patch_file(file4, entry(0, 64 * block), entry(0, 63 * block));
    CHECK_THROWS_WITH(load4(), Contains(embed + ": U8 [133056]") && Contains("it holds 1008 rows where this model has 1024"));
    const auto begin = header_of(file8).at(ple).at("data_offsets").at(0).get<std::size_t>();
    const std::size_t ple_block = QuantizedMatrix::storage_bytes(WeightFormat::kInt8, kRowBlock, 32);
    const std::size_t rows = 1024 * 35;
    patch_file(file8, entry(begin, rows / kRowBlock * ple_block), entry(begin, (rows - 32) / kRowBlock * ple_block));
    CHECK_THROWS_WITH(load8(), Contains(ple) && Contains("it holds 35808 rows where this model has 35840"));
  }
  SECTION("a matrix's scale is not finite") {
    std::string bytes = read_file(file8);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(bytes.data() + tensor_offset(file8, embed) + 1024 * 128 + 5 * sizeof(float), &nan, sizeof nan);
    write_file(file8, bytes);
    CHECK_THROWS_WITH(load8(), Contains(file8.string()) && Contains(embed + ": row 5 has an invalid scale (corrupt file)"));
  }
  SECTION("an int4 group scale is not finite") {
    // The PLE projection's second row block, group 1's scale of lane 3: an infinite bf16.
    const std::string projection = "model.language_model.per_layer_model_projection.weight";
    std::string bytes = read_file(file4);
    constexpr std::size_t kBlocks = static_cast<std::size_t>(TinyE2B::config.num_hidden_layers) * TinyE2B::config.hidden_size_per_layer_input / kRowBlock;
    const std::size_t at = tensor_offset(file4, projection) + Int4Layout::place(1, kBlocks, TinyE2B::config.hidden_size).scale(1, 3);
    bytes[at] = '\x80';
    bytes[at + 1] = '\x7f';
    write_file(file4, bytes);
    CHECK_THROWS_WITH(load4(), Contains(projection + ": row 19 has an invalid scale"));
  }
  SECTION("a PLE row's scale is not finite: refused when the token comes, the session unchanged") {
    // Token 7's rows are 7 * 35 .. 7 * 35 + 34; row 250 is in row block 15, lane 10.
    std::string bytes = read_file(file4);
    constexpr std::size_t kBlocks = static_cast<std::size_t>(TinyE2B::config.vocab_size_per_layer_input) * TinyE2B::config.num_hidden_layers / kRowBlock;
    const std::size_t at = tensor_offset(file4, ple) + Int4Layout::place(15, kBlocks, 32).scale(0, 10);
    bytes[at] = '\xc0';
    bytes[at + 1] = '\x7f';  // a NaN
    write_file(file4, bytes);
    const Weights<TinyE2B> w = load4();  // the table is not read at load
    Session<TinyE2B> session(w, {.max_context = 8});
    std::vector<float> logits(TinyE2B::config.vocab_size);
    session.forward(std::vector<int>{2, 6}, Logits::kLast, logits);
    CHECK_THROWS_WITH(session.forward(std::vector<int>{5, 7}, Logits::kLast, logits),
                      Contains(file4.string()) && Contains(ple + ": the row of token 7 has an invalid scale (corrupt file)"));
    CHECK(session.position() == 2);
  }
}

// The same directory read by two architectures: CI converts it with the x86 build and
// runs this under qemu for aarch64 (tests/CMakeLists.txt: GEMMA4_CROSS_CHECK_DIR).
TEST_CASE("a packed model converted on another machine gives its logits here, and its checkpoint converted here its bytes", "[.cross-arch]") {
  const char* dir = std::getenv("GEMMA4_CROSS_CHECK_DIR");
  REQUIRE(dir != nullptr);
  const std::filesystem::path root(dir);
  const std::vector<int> tokens = {2, 5, 17, 300, 1000, 7, 64, 900};
  const std::string expected_bytes = read_file(root / "logits.f32");
  std::vector<float> expected(expected_bytes.size() / sizeof(float));
  std::memcpy(expected.data(), expected_bytes.data(), expected.size() * sizeof(float));
  const Weights<TinyE2B> packed(root / "tiny-e2b-int4");
  REQUIRE(packed.report().packed_model);
  const auto logits = all_logits(packed, tokens);
  REQUIRE(logits.size() == expected.size());
  // Other SIMD widths sum floats in another order, and where an activation lies within
  // that rounding of a half step of its int8 quantization, it rounds the other way:
  // measured between AVX-512 and AVX2 on this model, mean KL 1e-4..6e-4 and logits up
  // to 0.2 apart, argmaxes equal. A file read wrongly gives unrelated logits (KL ~ 1).
  const LogitAgreement agreement = compare_logits(expected, logits, TinyE2B::config.vocab_size);
  float largest = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) largest = std::max(largest, std::fabs(logits[i] - expected[i]));
  INFO("largest difference " << largest << ", rms " << agreement.rms_error << ", top-1 " << agreement.top1);
  CHECK(agreement.mean_kl < 5e-3);
  CHECK(agreement.rms_error < 0.1);
  // Quantizing is exact arithmetic (int4's scale search sums exact products in double):
  // another compiler, target and FMA contraction choose the same levels and scales.
  check_same_matrices(packed, Weights<TinyE2B>(root / "tiny-e2b", {.format = WeightFormat::kInt4}));
}
