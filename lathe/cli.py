"""The `lathe` command."""

from __future__ import annotations

import argparse
import shutil
import sys

from lathe.target import BUILDABLE, KINDS


def target_status() -> list[tuple[str, bool, str]]:
    """(target, usable here, why) for every target kind lathe knows."""
    rows = []
    for kind in KINDS:
        if kind == "llvm":
            try:
                from lathe.codegen.llvm import host_cpu

                cpu, features = host_cpu()
                simd = "AVX-512" if "+avx512f" in features else "AVX2" if "+avx2" in features else "SSE"
                rows.append((kind, True, f"llvmlite, host CPU {cpu} ({simd})"))
            except Exception as err:  # noqa: BLE001 - report any failure to load LLVM as the reason
                rows.append((kind, False, f"llvmlite does not load: {err}"))
        elif kind == "c":
            cc = shutil.which("cc") or shutil.which("gcc")
            rows.append((kind, bool(cc), f"C compiler {cc}" if cc else "no C compiler (apt-get install gcc)"))
        else:
            rows.append((kind, False, "no code generator in this version of lathe"))
    return [r for r in rows if r[0] in BUILDABLE or not r[1]]


def cmd_targets(_args) -> int:
    for kind, ok, why in target_status():
        print(f"{kind:8s} {'yes' if ok else 'no ':3s}  {why}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lathe", description="lathe: a deep-learning compiler")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("targets", help="list the targets this machine can run, and why not").set_defaults(fn=cmd_targets)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
