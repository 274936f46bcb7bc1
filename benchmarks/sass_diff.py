"""Compare the machine code (SASS) of a kernel file at two revisions, kernel by kernel: for checking,
without a GPU, that a refactor of kernels/*.cu leaves the generated code alone.

    python benchmarks/sass_diff.py kernels/norm.cu                # HEAD against the working tree
    python benchmarks/sass_diff.py kernels/conv.cu --base HEAD~2 --arch sm_90

Each version is compiled with ``nvcc -cubin -O3 -arch ARCH`` (ptxas -v for registers and spills) and
disassembled with ``cuobjdump -sass``. Per kernel it prints one of:

- ``same``: the identical instruction sequence;
- ``renamed``: the same sequence once register numbers, predicates, constant-bank offsets and
  immediates are masked (register allocation or parameter order moved, nothing else);
- ``changed``: anything else, with the instruction counts and, when --show N, the first N lines of
  the diff;

plus the register count and spill bytes of both versions where they differ. The exit status is 0
when every kernel is ``same`` or ``renamed``, 1 otherwise.

cuobjdump is not part of a minimal CUDA install: the ``nvidia-cuda-cuobjdump`` wheel has it
(``python -m pip install --target DIR nvidia-cuda-cuobjdump``, then put DIR/nvidia/cu13/bin on PATH,
or pass --cuobjdump).
"""
from __future__ import annotations

import argparse
import difflib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_INSN = re.compile(r"\s*/\*[0-9a-f]{4,}\*/\s*(.*?)\s*;")
_FUNC = re.compile(r"\s*Function : (\S+)")
_MASK = re.compile(r"\bU?R\d+\b|\bU?P\d\b|0x[0-9a-f]+|c\[0x[0-9a-f]+\]\[0x[0-9a-f]+\]")


def sass_by_kernel(text: str) -> dict[str, list[str]]:
    """{mangled kernel name: [instruction, ...]} from cuobjdump -sass output (addresses and encodings
    dropped, white space folded)."""
    out, cur = {}, None
    for line in text.splitlines():
        m = _FUNC.match(line)
        if m:
            cur = out.setdefault(m.group(1), [])
            continue
        m = _INSN.match(line)
        if m and cur is not None:
            out_line = " ".join(m.group(1).split())
            cur.append(out_line)
    return out


def ptxas_usage(text: str) -> dict[str, tuple[int, int]]:
    """{kernel: (registers, spill store + load bytes)} from ptxas -v output."""
    out, cur, spill = {}, None, 0
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            cur, spill = m.group(1), 0
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            spill = int(m.group(1)) + int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m and cur:
            out[cur] = (int(m.group(1)), spill)
    return out


def compile_sass(src: Path, arch: str, nvcc: str, cuobjdump: str, work: Path):
    cubin = work / (src.stem + ".cubin")
    res = subprocess.run([nvcc, f"-arch={arch}", "-cubin", "-O3", "-Xptxas", "-v", "-o", str(cubin),
                          str(src)], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"sass_diff: nvcc failed on {src}:\n{res.stderr.strip()}")
    dump = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True, check=True)
    return sass_by_kernel(dump.stdout), ptxas_usage(res.stderr)


def classify(a: list[str], b: list[str]) -> str:
    if a == b:
        return "same"
    def mask(seq):
        return [_MASK.sub("_", x) for x in seq]
    return "renamed" if mask(a) == mask(b) else "changed"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="the .cu file, relative to the repository root")
    ap.add_argument("--base", default="HEAD", help="git revision to compare the working tree's file with")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--nvcc", default="nvcc")
    ap.add_argument("--cuobjdump", default=shutil.which("cuobjdump") or "cuobjdump")
    ap.add_argument("--show", type=int, default=0, help="print the first N diff lines of changed kernels")
    args = ap.parse_args(argv)

    root = Path(__file__).resolve().parent.parent
    rel = Path(args.file)
    new_src = root / rel
    if not new_src.is_file():
        raise SystemExit(f"sass_diff: {new_src} not found")
    old_text = subprocess.run(["git", "-C", str(root), "show", f"{args.base}:{rel.as_posix()}"],
                              capture_output=True, text=True)
    if old_text.returncode:
        raise SystemExit(f"sass_diff: git show {args.base}:{rel}: {old_text.stderr.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "old").mkdir()
        (tmp / "new").mkdir()
        old_src = tmp / "old" / rel.name
        old_src.write_text(old_text.stdout)
        old, old_use = compile_sass(old_src, args.arch, args.nvcc, args.cuobjdump, tmp / "old")
        new, new_use = compile_sass(new_src, args.arch, args.nvcc, args.cuobjdump, tmp / "new")

    counts = {"same": 0, "renamed": 0, "changed": 0}
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            print(f"{'added' if name in new else 'removed'} {name}")
            counts["changed"] += 1
            continue
        kind = classify(old[name], new[name])
        counts[kind] += 1
        use = ""
        if old_use.get(name) != new_use.get(name):
            use = f"  registers/spill bytes {old_use.get(name)} -> {new_use.get(name)}"
        if kind != "same" or use:
            print(f"{kind} {name} ({len(old[name])} -> {len(new[name])} instructions){use}")
        if kind == "changed" and args.show:
            diff = difflib.unified_diff(old[name], new[name], lineterm="", n=0)
            for line in list(diff)[2:2 + args.show]:
                print("    " + line)
    print(f"{rel} at {args.base} -> working tree, {args.arch}: " +
          ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0 if counts["changed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
