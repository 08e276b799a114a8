"""The `lathe` command: compile, run, classify, check, info, targets, bench, tune."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys

import numpy as np

from lathe.errors import LatheError
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
            cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
            rows.append((kind, bool(cc), f"C compiler {cc}" if cc else "no C compiler (apt-get install gcc)"))
        elif kind in ("opencl", "cuda", "opengl", "webgl", "webgpu", "wasm"):  # each runtime reports (usable, why)
            rows.append((kind, *importlib.import_module(f"lathe.runtime.{kind}").status()))
        else:
            rows.append((kind, False, "no code generator in this version of lathe"))
    return [r for r in rows if r[0] in BUILDABLE or not r[1]]


def resolve_model(name: str, batch: int = 1):
    """A model file path, or the name of a model in lathe.zoo."""
    if os.path.exists(name):
        return name
    from lathe import zoo

    try:
        return zoo.get_model(name, batch=batch)
    except ValueError as err:
        raise LatheError(f"{name!r} is neither a model file nor a zoo model: {err}") from None


def _compile(args, model=None):
    import lathe

    return lathe.compile(model if model is not None else resolve_model(args.model), args.target, verbose=True)


def cmd_targets(_args) -> int:
    for kind, ok, why in target_status():
        print(f"{kind:8s} {'yes' if ok else 'no ':3s}  {why}")
    return 0


def cmd_compile(args) -> int:
    mod = _compile(args)
    mod.save(args.output)
    print(f"saved {args.output} ({mod.stats['kernels']} kernels, compiled in {mod.stats['compile_s']:.1f} s)")
    return 0


def cmd_run(args) -> int:
    import lathe

    mod = lathe.load(args.model) if os.path.isfile(os.path.join(args.model, "manifest.json")) else _compile(args)
    feed = {}
    for item in args.input:
        name, _, path = item.partition("=")
        if not path:
            raise LatheError(f"--input {item!r}: write NAME=FILE.npy")
        feed[name] = np.load(path, allow_pickle=False)
    outs = mod.run(feed)
    for k, out in enumerate(outs):
        if k < len(args.output):
            np.save(args.output[k], out, allow_pickle=False)
            print(f"{mod.output_names[k]}: {out.dtype}{list(out.shape)} -> {args.output[k]}")
        else:
            print(f"{mod.output_names[k]}: {out.dtype}{list(out.shape)} (pass --output FILE.npy to save)")
    return 0


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cmd_classify(args) -> int:
    from lathe import zoo

    if args.image:
        from skimage import io

        img = io.imread(args.image)[..., :3]
    else:
        img = zoo.cat_image()
    x = zoo.preprocess(img)
    mod = _compile(args, zoo.get_model(args.model))
    probs = softmax(mod(x)[0].astype(np.float64))
    labels = zoo.imagenet_labels()
    print(f"{args.model} on {args.target}, image {args.image or 'the sample cat (scikit-image chelsea)'}:")
    for k in np.argsort(-probs)[:5]:
        print(f"  {probs[k]:.4f}  {labels[k]}")
    return 0


def cmd_check(args) -> int:
    import lathe
    from lathe.frontend.onnx import parse

    model = resolve_model(args.model)
    proto = parse(model)
    mod = lathe.compile(proto, args.target, verbose=True)
    rng = np.random.default_rng(0)
    feed = {}
    for spec in mod.spec["inputs"]:
        if spec["dtype"].startswith("float"):
            feed[spec["name"]] = rng.standard_normal(spec["shape"]).astype(spec["dtype"])
        else:
            feed[spec["name"]] = rng.integers(0, 10, spec["shape"]).astype(spec["dtype"])
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expect = sess.run(None, feed)
    got = mod.run(feed)
    worst = 0.0
    for name, g, e in zip(mod.output_names, got, expect):
        abs_err = float(np.max(np.abs(g.astype(np.float64) - e))) if g.size else 0.0
        rel_err = abs_err / max(float(np.max(np.abs(e))), 1e-30) if g.size else 0.0
        worst = max(worst, rel_err)
        print(f"{name}: max abs error {abs_err:.3e}, max rel error {rel_err:.3e} (relative to max |ORT output|)")
    ok = worst <= args.rtol
    print(f"{'PASS' if ok else 'FAIL'}: max relative error {worst:.3e} {'<=' if ok else '>'} {args.rtol:g}")
    return 0 if ok else 1


def cmd_export_web(args) -> int:
    from lathe.web_export import export_web

    export_web(args.model, args.output)
    print(f"wrote {args.output}: serve it with any static file server, e.g. python -m http.server -d {args.output}")
    return 0


def cmd_info(args) -> int:
    from lathe.frontend.onnx import load_onnx
    from lathe.graph.ir import count_flops

    g = load_onnx(resolve_model(args.model))
    n_params = sum(int(np.prod(v.shape)) for v in g.values.values() if v.is_const)
    print(f"inputs:  {', '.join(f'{i} {g.values[i].dtype}{list(g.values[i].shape)}' for i in g.inputs)}")
    print(f"outputs: {', '.join(f'{o} {g.values[o].dtype}{list(g.values[o].shape)}' for o in g.outputs)}")
    print(f"nodes: {len(g.nodes)}; parameters: {n_params:,} ({g.param_bytes() / 2**20:.1f} MiB); "
          f"GFLOPs: {count_flops(g) / 1e9:.3f}")
    for op, count in sorted(g.op_counts().items(), key=lambda kv: -kv[1]):
        print(f"  {op:24s} {count}")
    return 0


def cmd_bench(args) -> int:
    from lathe.benchmark import bench_model, save_json

    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    res = bench_model(resolve_model(args.model), targets, args.runs, args.threads, peers, name=args.model)
    print(f"{args.model}, {args.threads} threads, median of {args.runs} (same process, alternating blocks):")
    print(f"  {'system':24s} {'median ms':>10s} {'p10':>8s} {'p90':>8s}  {'vs fastest peer':>15s}")
    for name, r in res.items():
        ratio = "" if r["ratio_to_fastest_peer"] is None else f"{r['ratio_to_fastest_peer']:.2f}"
        print(f"  {name:24s} {r['median_ms']:10.2f} {r['p10_ms']:8.2f} {r['p90_ms']:8.2f}  {ratio:>15s}")
    layers = _profile(args, targets[0]) if args.profile else None
    if args.json:
        save_json(args.json, f"bench {args.model}", {"model": args.model, "threads": args.threads,
                                                      "runs": args.runs, "results": res, "profile": layers})
        print(f"saved {args.json}")
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise LatheError("--plot needs matplotlib: pip install matplotlib") from None
        names = list(res)
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * len(names)))
        med = [res[n]["median_ms"] for n in names]
        err = [[m - res[n]["p10_ms"] for n, m in zip(names, med)], [res[n]["p90_ms"] - m for n, m in zip(names, med)]]
        ax.barh(names, med, xerr=err)
        ax.set_xlabel("ms (median, p10-p90)")
        ax.set_title(f"{args.model}, {args.threads} threads")
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"saved {args.plot}")
    return 0


def cmd_tune(args) -> int:
    from lathe.tune.task import tasks_from_model
    from lathe.tune.tuner import tune

    model = resolve_model(args.model)
    tasks = tasks_from_model(model, args.target)
    print(f"{len(tasks)} tunable kernels; {args.trials} trials ({args.tuner}) logged to {args.log}")
    from lathe.target import Target

    runner, session = None, None
    if Target.parse(args.target).kind in ("webgpu", "wasm", "webgl"):  # measured where they run: in a browser
        import lathe.rpc
        from lathe.tune.measure import BrowserRunner

        if args.ray:
            raise LatheError(f"target {args.target}: candidates are measured in a browser tab, not on Ray")
        session = lathe.rpc.browser(launch=args.browser == "headless")
        print(f"measuring in {'headless Chromium' if session._browser else 'your browser'} through lathe.rpc")
        runner = BrowserRunner(session)
    elif args.ray:
        from lathe.tune.measure import RayRunner

        runner = RayRunner(None if args.ray == "local" else args.ray, Target.parse(args.target).threads)
    try:
        summary = tune(tasks, args.log, args.trials, args.tuner, args.budget, args.timeout, runner=runner,
                       model=model)
    finally:
        if session is not None:
            session.close()
    print(f"  {'kernel':44s} {'trials':>6s} {'default ms':>10s} {'best ms':>8s} {'speed-up':>8s}")
    for r in summary:
        if r["default_s"] and r["best_s"]:
            print(f"  {r['task'][:44]:44s} {r['trials']:6d} {r['default_s'] * 1e3:10.3f} {r['best_s'] * 1e3:8.3f} "
                  f"{r['default_s'] / r['best_s']:8.2f}")
    print(f"apply with lathe.compile(model, {args.target!r}, records={args.log!r})")
    return 0


def _profile(args, target: str) -> dict:
    """Per-kernel times inside whole runs, each against its arithmetic floor at the measured FMA peak."""
    import lathe
    from lathe.benchmark import fma_peak

    t = target if "-threads" in target else f"{target} -threads={args.threads}"
    mod = lathe.compile(resolve_model(args.model), t)
    rng = np.random.default_rng(0)
    feed = {s["name"]: rng.standard_normal(s["shape"]).astype(s["dtype"]) for s in mod.spec["inputs"]}
    rows = mod.profile(feed, repeat=max(10, min(args.runs, 50)))
    peak = fma_peak(t.split()[0], args.threads)
    print(f"\nper-kernel profile, lathe {t} (median inside whole runs); FMA peak {peak:.0f} GFLOP/s measured")
    print(f"  {'kernel':34s} {'ms':>7s} {'GFLOP/s':>8s} {'% peak':>7s} {'floor ms':>9s}  ops")
    for r in rows:
        r["floor_ms"] = r["flops"] / peak / 1e6
        pct = f"{100 * r['gflops'] / peak:6.0f}%" if r["flops"] else ""
        print(f"  {r['kernel'][:34]:34s} {r['ms']:7.3f} {r['gflops']:8.0f} {pct:>7s} {r['floor_ms']:9.3f}  {r['ops']}")
    total, floor = sum(r["ms"] for r in rows), sum(r["floor_ms"] for r in rows)
    print(f"  {'total':34s} {total:7.3f} {'':8s} {'':7s} {floor:9.3f}  (floor: every FLOP at peak)")
    return {"target": t, "fma_peak_gflops": peak, "kernels": rows, "total_ms": total, "floor_ms": floor}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lathe", description="lathe: a deep-learning compiler")
    sub = ap.add_subparsers(dest="command", required=True)

    def cmd(name: str, fn, help: str, model: bool = True, target: bool = True):
        p = sub.add_parser(name, help=help)
        if model:
            p.add_argument("model", help="an .onnx file or a zoo model name (resnet18, efficientnet_lite0)")
        if target:
            p.add_argument("-t", "--target", default="llvm",
                           help="target string, e.g. llvm or 'llvm -threads=2'; bench takes a comma-separated list")
        p.set_defaults(fn=fn)
        return p

    cmd("targets", cmd_targets, "list the targets this machine can run, and why not", model=False, target=False)
    cmd("compile", cmd_compile, "compile a model to an artifact directory").add_argument(
        "-o", "--output", required=True, help="artifact directory")
    p = cmd("run", cmd_run, "run a model or artifact on .npy inputs")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    p.add_argument("--output", action="append", default=[], metavar="FILE.npy")
    p = cmd("classify", cmd_classify, "top-5 ImageNet classes of an image (default: the sample cat)", model=False)
    p.add_argument("image", nargs="?", help="image file (default: scikit-image's chelsea cat)")
    p.add_argument("--model", default="efficientnet_lite0")
    cmd("check", cmd_check, "compare every output with ONNX Runtime on random inputs").add_argument(
        "--rtol", type=float, default=1e-4, help="largest allowed error relative to max |ORT output|")
    cmd("export-web", cmd_export_web,
        "write a static page that classifies images with MODEL (WebGPU, else WebGL2, else wasm)",
        target=False).add_argument("-o", "--output", required=True, help="directory for the page")
    cmd("info", cmd_info, "operators, parameters and FLOPs of a model", target=False)
    p = cmd("bench", cmd_bench, "time lathe against peers in one process (median, p10, p90, ratios)")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peers", default="onnxruntime",
                   help="comma-separated: onnxruntime, torch, torch-compile (the torch ones for zoo models)")
    p.add_argument("--json", help="save the results (and the machine's description) to this file")
    p.add_argument("--plot", help="save a bar chart to this PNG file (needs matplotlib)")
    p.add_argument("--profile", action="store_true",
                   help="also time each kernel of the first target against its arithmetic floor")
    p = cmd("tune", cmd_tune, "search each kernel's schedule knobs, logging measurements to a JSONL file")
    p.add_argument("--trials", type=int, default=200, help="candidates to measure in all (resumes from --log)")
    p.add_argument("--log", required=True, help="JSONL records file (read to resume, appended to)")
    p.add_argument("--budget", type=float, help="stop after this many seconds")
    p.add_argument("--tuner", choices=("xgb", "random", "grid"), default="xgb")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to build and run one candidate")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="measure on a Ray cluster: ADDRESS ('auto' after `ray start`), or a local one if omitted")
    p.add_argument("--browser", choices=("headless", "url"), default="headless",
                   help="webgpu, wasm and webgl candidates run in a browser tab: headless Chromium (default), or "
                        "'url' to print the page to open in your own browser")
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except LatheError as err:
        print(f"lathe {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
