#!/usr/bin/env python3
"""Estimated core cycles per 64 bytes of weights for the quantized kernels' inner loops,
on ARM cores we cannot run on, from llvm-mca's scheduling models (Debian's LLVM 14); the
x86 column from the same tool beside what gemma4_bench_kernel_cycles measures here, to
show how far the tool can be trusted. Regenerates the table in the README:

  python3 bench/mca/kernel_table.py [--measured build/bench/gemma4_bench_kernel_cycles]

It compiles bench/kernel_cycles.cpp to assembly with the compilers the build uses
(aarch64-linux-gnu-g++ for Armv8.0 + crypto, as CI's aarch64 build; g++ for AVX-512),
takes the innermost loop around each kernel's multiplies, and lets llvm-mca run it.
Standard library only; needs g++, g++-aarch64-linux-gnu, llvm-14 and the arm64 headers
CI installs (libhwy-dev:arm64, libfmt-dev:arm64).
"""
import argparse
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "bench" / "kernel_cycles.cpp"
KERNELS = ["int8_decode", "int4_decode", "int8_prefill", "int4_prefill", "int4_verify"]


def loop_shape(lines, kernel, dot, vector_bytes):
    """Weight bytes one iteration of the kernel's inner loop reads, and tokens it serves:
    the gemma4_loop_<kernel>_<dot> constants kernel_cycles.cpp derives from the kernels'
    own, read from the same assembly."""
    start = lines.index(f"gemma4_loop_{kernel}_{dot}:")
    vectors, tokens = (int(re.match(r"^\s*\.(?:quad|xword|8byte)\s+(\d+)$", line).group(1)) for line in lines[start + 1:start + 3])
    return vectors * vector_bytes, tokens


ARCHES = {
    "aarch64": {
        "compile": ["aarch64-linux-gnu-g++", "-march=armv8-a+crypto"],
        "mca": ["-mtriple=aarch64", "-mattr=+dotprod,+i8mm"],
        "dots": ["Portable", "Int16", "Sdot", "I8mm"],
        "vector_bytes": 16,
        # llvm-mca 14's AArch64 scheduling models, and the cores that use them: LLVM 14
        # has none of its own for A76/A78/A710/X1/X2/Neoverse (they take the A57 model)
        # or for A510 (the A55 model).
        "cpus": {"cortex-a53": "Armv8.0 little cores, no dot product (A53: Raspberry Pi 3, many low-cost SoCs)",
                 "cortex-a55": "little cores (A55; A510 uses this model)",
                 "cortex-a57": "big cores (A57 model, which LLVM 14 also uses for A76-A710, X1/X2, Neoverse N1/N2/V1)",
                 "apple-m1": "Apple M1 (LLVM's Cyclone model)"},
    },
    "x86": {
        "compile": ["g++", "-march=skylake-avx512"],
        "mca": ["-mtriple=x86_64"],
        "dots": ["Portable", "Int16", "Vnni"],
        "vector_bytes": 64,
        # LLVM 14's Zen models lack AVX-512; this host is a Zen 4 EPYC.
        "cpus": {"icelake-server": "x86 AVX-512 (Skylake-server model)"},
    },
}
DOT_OPS = {  # the instructions that multiply, to find each kernel's innermost loop
    "aarch64": re.compile(r"^\s*(\.inst|mla\s+v|mul\s+v|smull2?\s+v)"),
    "x86": re.compile(r"^\s*(vpdpbusd|vpmaddwd|vpmaddubsw|vpmulld)"),
}
BRANCH = re.compile(r"^\s*(j[a-z]+|b[a-z.]*|cbn?z|tbn?z)\s+(?:[^,]*,\s*)*(\.L\w+)\s*$")
ARM_INST = re.compile(r"\.inst\s+(\d+)\s*\|\s*\(\.Lgemma4_(v\d+)\s*<<\s*16\)\s*\|\s*\(\.Lgemma4_(v\d+)\s*<<\s*5\)\s*\|\s*\.Lgemma4_(v\d+)")
ARM_MNEMONICS = {0x4E809400: "sdot", 0x4E809C00: "usdot", 0x4E80AC00: "usmmla"}
ARM_BY_ELEMENT = {0x4F80E000: "sdot", 0x4F80F000: "usdot"}


def assembly(arch):
    cmd = ARCHES[arch]["compile"] + ["-O2", "-std=c++20", "-DHWY_COMPILE_ONLY_STATIC", f"-I{ROOT / 'include'}",
                                     "-S", "-o", "-", str(SOURCE)]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()


def function_body(lines, name):
    start = lines.index(f"{name}:")
    end = next(i for i in range(start, len(lines)) if lines[i].strip().startswith(f".size\t{name}"))
    return lines[start:end]


def kernel_loop(lines, name, arch):
    """The kernel's innermost loop, in its own body or in a function it calls or jumps to
    (GCC leaves the larger tiles' lambdas out of line, and kernels with the same tiles
    share one all_tiles)."""
    body = function_body(lines, name)
    loop = innermost_loop(body, arch)
    if loop:
        return loop
    for line in body:
        call = re.match(r"^\s*(?:bl|call|b|jmp)\s+([\w.$]+)$", line)
        if call and not call.group(1).startswith(".L") and f"{call.group(1)}:" in lines:
            loop = kernel_loop(lines, call.group(1), arch)
            if loop:
                return loop
    raise SystemExit(f"{name}: no loop around a multiply found")


def innermost_loop(body, arch):
    """The shortest label..backward-branch span around a multiply, as llvm-mca input."""
    labels = {line[:-1]: i for i, line in enumerate(body) if re.match(r"^\.L\w+:$", line)}
    loops = []
    for j, line in enumerate(body):
        m = BRANCH.match(line)
        if m and m.group(2) in labels and labels[m.group(2)] < j:
            i = labels[m.group(2)]
            if any(DOT_OPS[arch].match(l) for l in body[i:j]):
                loops.append((j - i, i, j))
    if not loops:
        return None
    _, i, j = min(loops)
    out = []
    for line in body[i + 1:j + 1]:
        s = line.strip()
        m = ARM_INST.search(s)
        if m:
            encoding = int(m.group(1))
            lane_bits = encoding & (1 << 21 | 1 << 11)  # by element: the lane of Vm
            if encoding - lane_bits in ARM_BY_ELEMENT:
                lane = (lane_bits >> 21) | (lane_bits >> 11 & 1) << 1
                out.append(f"{ARM_BY_ELEMENT[encoding - lane_bits]} {m.group(4)}.4s, {m.group(3)}.16b, {m.group(2)}.4b[{lane}]")
            else:
                out.append(f"{ARM_MNEMONICS[encoding]} {m.group(4)}.4s, {m.group(3)}.16b, {m.group(2)}.16b")
        elif s and not s.startswith(".") and not s.startswith("#") and not s.startswith("//"):
            out.append(s)
    return out


def mca_cycles(arch, cpu, loop):
    iterations = 300
    cmd = ["llvm-mca-14", *ARCHES[arch]["mca"], f"-mcpu={cpu}", f"-iterations={iterations}"]
    result = subprocess.run(cmd, input="\n".join(loop) + "\n", check=True, capture_output=True, text=True).stdout
    total = int(re.search(r"Total Cycles:\s+(\d+)", result).group(1))
    return total / iterations


def measured(binary):
    """gemma4_bench_kernel_cycles' table: {kernel: {dot: cycles}}."""
    text = subprocess.run([binary, "--runs", "7"], check=True, capture_output=True, text=True).stdout.splitlines()
    header = next(i for i, line in enumerate(text) if line.startswith("kernel"))
    dots = text[header].split()[1:]
    table = {}
    for line in text[header + 1:]:
        fields = line.split()
        table[fields[0]] = {d: float(v) for d, v in zip(dots, fields[1:]) if v != "-"}
    return text[0], table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measured", help="gemma4_bench_kernel_cycles built for this host (AVX-512), for the measured column")
    args = parser.parse_args()
    estimates = {}  # (arch, cpu, dot, kernel) -> cycles per 64 bytes (per token for prefill)
    for arch, spec in ARCHES.items():
        lines = assembly(arch)
        for kernel in KERNELS:
            for dot in spec["dots"]:
                loop = kernel_loop(lines, f"gemma4_kernel_{kernel}_{dot}", arch)
                weight_bytes, tokens = loop_shape(lines, kernel, dot, spec["vector_bytes"])
                for cpu in spec["cpus"]:
                    estimates[arch, cpu, dot, kernel] = mca_cycles(arch, cpu, loop) * 64 / weight_bytes / tokens

    print("Estimated cycles per 64 bytes of weights (tiles of several tokens: per token), llvm-mca 14, weights in L1:\n")
    for arch, spec in ARCHES.items():
        for cpu, what in spec["cpus"].items():
            print(f"{arch} -mcpu={cpu}: {what}")
    measured_line, measured_table = measured(args.measured) if args.measured else ("", {})
    columns = [(arch, cpu, dot) for arch, spec in ARCHES.items() for cpu in spec["cpus"] for dot in spec["dots"]]
    print()
    print("| kernel | " + " | ".join(f"{cpu} {dot}" for _, cpu, dot in columns)
          + (" | measured here: " + " | ".join(ARCHES["x86"]["dots"]) if measured_table else "") + " |")
    print("|---" * (1 + len(columns) + (len(ARCHES["x86"]["dots"]) if measured_table else 0)) + "|")
    for kernel in KERNELS:
        row = [f"{estimates[arch, cpu, dot, kernel]:.2f}" for arch, cpu, dot in columns]
        if measured_table:
            row += [f"{measured_table[kernel].get(dot, float('nan')):.2f}" for dot in ARCHES["x86"]["dots"]]
        print(f"| {kernel} | " + " | ".join(row) + " |")
    if measured_table:
        print(f"\nmeasured: {measured_line}")
        ratios = [measured_table[k][d] / estimates["x86", "icelake-server", d, k]
                  for k in KERNELS for d in ARCHES["x86"]["dots"] if d in measured_table[k]]
        print(f"measured / estimated on x86: {min(ratios):.2f}x to {max(ratios):.2f}x")

    # E2B packed int4 streams 1.46 GB per token (README): the tied LM head's 403 MB in
    # int8, the rest int4. One core's compute time per token, at an assumed clock, against
    # the time to read the bytes at typical LPDDR bandwidths.
    int8_bytes, int4_bytes = 262144 * 1536, 1.46e9 - 262144 * 1536
    clocks = {"cortex-a53": 1.4e9, "cortex-a55": 2.0e9, "cortex-a57": 2.8e9, "apple-m1": 3.2e9}
    print("\nE2B packed int4 decode on one core, estimated (compute-bound tok/s at the clock given; "
          "bandwidth-bound tok/s: 1.46 GB/token at LPDDR4X 17 GB/s and LPDDR5 51 GB/s = 11.6 and 34.9 tok/s):\n")
    print("| core model, clock | " + " | ".join(ARCHES["aarch64"]["dots"]) + " |")
    print("|---" * (1 + len(ARCHES["aarch64"]["dots"])) + "|")
    for cpu, hz in clocks.items():
        cells = []
        for dot in ARCHES["aarch64"]["dots"]:
            cycles = (int8_bytes * estimates["aarch64", cpu, dot, "int8_decode"]
                      + int4_bytes * estimates["aarch64", cpu, dot, "int4_decode"]) / 64
            cells.append(f"{hz / cycles:.1f} tok/s")
        print(f"| {cpu}, {hz / 1e9:.1f} GHz | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
