// Hostile and broken safetensors files: each is a clear Error naming the problem,
// never a crash or a read outside the mapping (the ASan build checks the latter).

#include <catch2/catch.hpp>

#include <cstring>
#include <map>

#include "gemma4/weights/safetensors.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;
using Catch::Matchers::Contains;

namespace {

// Opens a safetensors file made of `bytes` and returns the error message ("" if none).
std::string open_error(const std::string& bytes) {
  TempDir dir;
  write_file(dir / "x.safetensors", bytes);
  try {
    SafetensorsFile file(dir / "x.safetensors");
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::string f32_bytes(std::initializer_list<float> values) {
  std::string out(values.size() * 4, '\0');
  std::memcpy(out.data(), values.begin(), out.size());
  return out;
}

}  // namespace

TEST_CASE("a well-formed file is read in place", "[safetensors]") {
  TempDir dir;
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"BF16","shape":[1],"data_offsets":[16,18]},"empty":{"dtype":"F32","shape":[0,4],"data_offsets":[18,18]}})";
  std::string data = f32_bytes({1.0f, 2.0f, 3.0f, -4.5f});
  data += std::string("\x80\x3f", 2);  // bf16 1.0
  write_file(dir / "ok.safetensors", safetensors_bytes(header, data));
  SafetensorsFile file(dir / "ok.safetensors");
  REQUIRE(file.tensors().size() == 3);
  const TensorInfo* a = file.find("a");
  REQUIRE(a != nullptr);
  CHECK(a->dtype == DType::kF32);
  CHECK(a->shape == std::vector<std::int64_t>{2, 2});
  CHECK(load_element(a->bytes.data(), DType::kF32, 3) == -4.5f);
  CHECK(load_element(file.find("b")->bytes.data(), DType::kBF16, 0) == 1.0f);
  CHECK(file.find("empty")->bytes.empty());
  CHECK(file.find("missing") == nullptr);
  CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
}

TEST_CASE("metadata maps strings to strings", "[safetensors][hostile]") {
  CHECK_THAT(open_error(safetensors_bytes(R"({"__metadata__":{"format":1}})", "")),
             Contains("__metadata__ 'format' is 1, not a string"));
  CHECK_THAT(open_error(safetensors_bytes(R"({"__metadata__":["pt"]})", "")), Contains("__metadata__ is not an object"));
}

TEST_CASE("files too short to hold a header length are truncated", "[safetensors][hostile]") {
  CHECK_THAT(open_error(""), Contains("truncated: 0 bytes"));
  CHECK_THAT(open_error("abc"), Contains("truncated: 3 bytes"));
}

TEST_CASE("a header length beyond the file is rejected", "[safetensors][hostile]") {
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  CHECK_THAT(open_error(safetensors_bytes(header, f32_bytes({1}), header.size() + 5)), Contains("runs past the end of the file"));
  CHECK_THAT(open_error(safetensors_bytes(header, "", ~std::uint64_t{0})), Contains("runs past the end of the file"));
}

TEST_CASE("a header that is not valid JSON is rejected", "[safetensors][hostile]") {
  CHECK_THAT(open_error(safetensors_bytes(R"({"a":{"dtype":"F32",)", "")), Contains("header is not valid JSON"));
  CHECK_THAT(open_error(safetensors_bytes("\xff\xfe", "")), Contains("header is not valid JSON"));
  CHECK_THAT(open_error(safetensors_bytes("[1,2]", "")), Contains("header is not a JSON object"));
}

TEST_CASE("malformed tensor entries name the tensor", "[safetensors][hostile]") {
  auto entry_error = [](const std::string& entry) {
    return open_error(safetensors_bytes(R"({"w":)" + entry + "}", f32_bytes({1, 2})));
  };
  CHECK_THAT(entry_error("5"), Contains("tensor 'w': header entry is not an object"));
  CHECK_THAT(entry_error(R"({"shape":[2],"data_offsets":[0,8]})"), Contains("tensor 'w': missing or non-string 'dtype'"));
  CHECK_THAT(entry_error(R"({"dtype":"F32","data_offsets":[0,8]})"), Contains("missing or non-array 'shape'"));
  CHECK_THAT(entry_error(R"({"dtype":"F32","shape":[2]})"), Contains("'data_offsets' must be an array [begin, end]"));
  CHECK_THAT(entry_error(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), Contains("'data_offsets' must be"));
  CHECK_THAT(entry_error(R"({"dtype":"Q4","shape":[2],"data_offsets":[0,8]})"), Contains("unknown dtype 'Q4'"));
  CHECK_THAT(entry_error(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), Contains("each dimension must be an integer in [0,"));
  CHECK_THAT(entry_error(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})"), Contains("each dimension must be an integer"));
  CHECK_THAT(entry_error(R"({"dtype":"F32","shape":[2],"data_offsets":[-1,8]})"), Contains("each of data_offsets [-1,8] must be an integer"));
}

TEST_CASE("data offsets outside the data section are rejected", "[safetensors][hostile]") {
  auto offsets_error = [](const std::string& offsets, const std::string& shape) {
    return open_error(safetensors_bytes(R"({"w":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}",
                                        f32_bytes({1, 2})));
  };
  CHECK_THAT(offsets_error("[0,12]", "[3]"), Contains("data_offsets [0, 12] lie outside the data section of 8 bytes"));
  CHECK_THAT(offsets_error("[8,4]", "[1]"), Contains("lie outside the data section"));
  CHECK_THAT(offsets_error("[18446744073709551612,18446744073709551615]", "[1]"), Contains("lie outside"));
}

TEST_CASE("a shape whose byte size disagrees with its offsets is rejected", "[safetensors][hostile]") {
  const auto header = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  CHECK_THAT(open_error(safetensors_bytes(header, f32_bytes({1, 2}))),
             Contains("shape [3] of F32 needs 12 bytes, but data_offsets [0, 8] hold 8"));
  // A shape so large its byte size wraps around 64 bits must not slip through.
  const auto huge = R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})";
  CHECK_THAT(open_error(safetensors_bytes(huge, "")), Contains("is too large"));
  const auto wraps_to_zero = R"({"w":{"dtype":"BF16","shape":[9223372036854775808],"data_offsets":[0,0]}})";
  CHECK_THAT(open_error(safetensors_bytes(wraps_to_zero, "")), Contains("is too large"));
}

TEST_CASE("overlapping tensors are rejected", "[safetensors][hostile]") {
  const auto header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  CHECK_THAT(open_error(safetensors_bytes(header, f32_bytes({1, 2}))), Contains("tensors 'a' and 'b' overlap"));
}

TEST_CASE("every truncation of a valid file is an error, never a crash", "[safetensors][hostile]") {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]}})";
  const std::string full = safetensors_bytes(header, std::string(22, '\x11'));
  REQUIRE(open_error(full).empty());
  for (std::size_t size = 0; size < full.size(); ++size) {
    INFO("truncated to " << size << " bytes");
    CHECK_FALSE(open_error(full.substr(0, size)).empty());
  }
}

TEST_CASE("a missing file is an error naming it", "[safetensors][hostile]") {
  CHECK_THROWS_WITH(SafetensorsFile("/nonexistent/gemma4.safetensors"), Contains("cannot open /nonexistent/gemma4.safetensors"));
}
