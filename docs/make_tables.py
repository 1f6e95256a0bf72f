#!/usr/bin/env python3
"""Regenerates the result tables of README.md from the commands that make them.

    python3 docs/make_tables.py             # run every table's command, print the tables
    python3 docs/make_tables.py --write     # ... and replace them in README.md
    python3 docs/make_tables.py reconstruct memorization   # only these tables
    python3 docs/make_tables.py --write nfe # one table, run, printed and replaced in README.md

Each table sits in README.md between `<!-- table: NAME -->` and `<!-- /table -->`; the line
before the table names the command. The runs go to `runs/tables/` (kept, so the run folders can
be looked at). Needs only Python's standard library and a release build of ouro
(`cargo build --release`).
"""

import csv
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OURO = ROOT / "target" / "release" / "ouro"
RUNS = ROOT / "runs" / "tables"


def run(*args):
    """Runs ouro with `args` from the repository root; returns the wall time in seconds."""
    start = time.time()
    subprocess.run([str(OURO), *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.time() - start


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fmt(v, digits=3):
    x = float(v)
    if x != x:
        return "NaN"
    if x == 0:
        return "0"
    if x == int(x) and abs(x) < 1000:
        return str(int(x))
    if abs(x) < 10 ** -digits:
        return f"{x:.1e}"
    if abs(x) >= 1000:
        return f"{x:,.0f}".replace(",", " ")
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def markdown(header, body):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def metrics_table(folder, columns, digits=3):
    data = rows(folder / "metrics.csv")
    return markdown(
        ["generation"] + columns,
        [[r["generation"]] + [fmt(r[c], digits) for c in columns] for r in data],
    )


def reconstruct():
    out = RUNS / "recon"
    cmd = ["reconstruct", "examples/reconstruct-digits.toml",
           "--steps", "0,100,200,300,500,700,1000", "--out", str(out), "--force"]
    secs = run(*cmd)
    cols = ["t", "rms_distance", "density", "coverage", "edge90", "edge99", "accuracy"]
    data = rows(out / "reconstruction.csv")
    table = markdown(cols, [[r["t"]] + [fmt(r[c]) for c in cols[1:]] for r in data])
    return f"`ouro reconstruct examples/reconstruct-digits.toml --steps 0,100,200,300,500,700,1000 --out runs/recon` ({secs:.0f} s):", table


def reconstruct_conditional():
    out = RUNS / "recon-conditional"
    secs = run("reconstruct", "examples/reconstruct-digits.toml", "--steps", "0,100,200,300,500,700,1000",
               "--out", str(out), "--force", "--set", "model.conditional=true")
    cols = ["t", "rms_distance", "accuracy", "class_edge90", "class_edge99"]
    data = rows(out / "reconstruction.csv")
    table = markdown(cols, [[r["t"]] + [fmt(r[c]) for c in cols[1:]] for r in data])
    return ("`ouro reconstruct examples/reconstruct-digits.toml --steps 0,100,200,300,500,700,1000 --out "
            f"runs/recon-cond --set model.conditional=true` ({secs:.0f} s):"), table


def digits_conditional():
    rep, fre = RUNS / "digits-replace", RUNS / "digits-fresh"
    t1 = run("run", "examples/digits-conditional-replace.toml", "--out", str(rep), "--force", "--quiet")
    t2 = run("run", "examples/digits-conditional-fresh.toml", "--out", str(fre), "--force", "--quiet")
    a, b = rows(rep / "metrics.csv"), rows(fre / "metrics.csv")
    ra, rb = fmt(a[0]["real_accuracy"]), fmt(b[0]["real_accuracy"])
    header = ["generation", "replace: synthetic", f"gap to real ({ra})", "edge90",
              "fresh α = 0.5: synthetic", f"gap to real ({rb})"]
    body = [[x["generation"], fmt(x["synthetic_accuracy"]), fmt(x["accuracy_gap"]), fmt(x["edge90"]),
             fmt(y["synthetic_accuracy"]), fmt(y["accuracy_gap"])] for x, y in zip(a, b)]
    head = (f"`ouro run examples/digits-conditional-replace.toml` ({t1 / 60:.1f} min) and "
            f"`ouro run examples/digits-conditional-fresh.toml` ({t2 / 60:.1f} min):")
    return head, markdown(header, body)


def mnist14():
    out = RUNS / "mnist14"
    secs = run("run", "examples/mnist14-conditional-replace.toml", "--out", str(out), "--force", "--quiet")
    for g in (0, 4):  # the pictures beside the table
        shutil.copyfile(out / "samples" / "seed-0" / f"gen-00{g}.png",
                        ROOT / "docs" / f"mnist14-conditional-gen{g}.png")
    data = rows(out / "metrics.csv")
    real = fmt(data[0]["real_accuracy"])
    header = ["generation", "synthetic_accuracy", f"gap to real ({real})", "class_edge90", "mmd2",
              "frechet (features)", "precision (features)"]
    body = [[r["generation"], fmt(r["synthetic_accuracy"]), fmt(r["accuracy_gap"]), fmt(r["class_edge90"]),
             fmt(r["mmd2"]), fmt(r["frechet"]), fmt(r["precision"])] for r in data]
    return f"`ouro run examples/mnist14-conditional-replace.toml` ({secs / 60:.1f} min):", markdown(header, body)


def kept_run(example, name, *sets):
    """The run folder RUNS/name of `ouro run examples/<example>.toml` with the `--set` overrides
    `sets`: a run kept from before is reused, else it is run."""
    out = RUNS / name
    if not (out / "metrics.csv").exists():
        run("run", f"examples/{example}.toml", "--out", str(out), "--force", "--quiet", *sets)
    return out


def unet_loop(example, name):
    """A kept (or, when absent, fresh) run of a MNIST 14×14 U-Net loop example and its table of
    train-on-synthetic accuracy, edges and feature-space distances per generation."""
    out = kept_run(example, name)
    data = rows(out / "metrics.csv")
    real = fmt(data[0]["real_accuracy"])
    header = ["generation", "synthetic_accuracy", f"gap to real ({real})", "class_edge90", "mmd2",
              "frechet (features)", "precision (features)", "recall (features)"]
    body = [[r["generation"], fmt(r["synthetic_accuracy"]), fmt(r["accuracy_gap"]), fmt(r["class_edge90"]),
             fmt(r["mmd2"]), fmt(r["frechet"]), fmt(r["precision"]), fmt(r["recall"])] for r in data]
    head = f"`ouro run examples/{example}.toml` ({run_seconds(out) / 60:.1f} min on {processor()}):"
    return out, head, markdown(header, body)


def mnist14_unet():
    out, head, table = unet_loop("mnist14-unet-replace", "mnist14-unet")
    for g in (0, 4):  # the pictures beside the table
        shutil.copyfile(out / "samples" / "seed-0" / f"gen-00{g}.png", ROOT / "docs" / f"mnist14-unet-gen{g}.png")
    return head, table


def mnist14_unet_fresh():
    out, head, table = unet_loop("mnist14-unet-fresh", "mnist14-unet-fresh")
    shutil.copyfile(out / "samples" / "seed-0" / "gen-004.png", ROOT / "docs" / "mnist14-unet-fresh-gen4.png")
    return head, table


def objective_table(example, eps_name, v_name):
    """The loop of `example` as it is (ε objective) and with `model.objective = "v"`, side by side
    per generation; writes docs/<v_name>-gen4.png."""
    eps = kept_run(example, eps_name)
    v = kept_run(example, v_name, "--set", 'model.objective="v"')
    shutil.copyfile(v / "samples" / "seed-0" / "gen-004.png", ROOT / "docs" / f"{v_name}-gen4.png")
    a, b = rows(eps / "metrics.csv"), rows(v / "metrics.csv")
    cols = [("synthetic_accuracy", "synthetic_accuracy"), ("class_edge90", "class_edge90"),
            ("frechet", "frechet (features)"), ("recall", "recall (features)")]
    header = ["generation"] + [f"{o}: {c}" for _, c in cols for o in ("ε", "v")]
    body = [[x["generation"]] + [fmt(r[k]) for k, _ in cols for r in (x, y)] for x, y in zip(a, b)]
    head = (f"`ouro run examples/{example}.toml` as it is (ε) and with `--set 'model.objective=\"v\"'` "
            f"(v; {run_seconds(v) / 60:.1f} min on {processor()}):")
    return head, markdown(header, body)


def mnist14_unet_objective():
    return objective_table("mnist14-unet-replace", "mnist14-unet", "mnist14-unet-v")


def mnist14_unet_fresh_objective():
    return objective_table("mnist14-unet-fresh", "mnist14-unet-fresh", "mnist14-unet-fresh-v")


def reconstruct_unet():
    out = RUNS / "recon-mnist14"
    steps = "0,100,200,300,500,700,1000"
    secs = run("reconstruct", "examples/reconstruct-mnist14-unet.toml", "--steps", steps, "--out", str(out),
               "--force")
    cols = ["t", "rms_distance", "accuracy", "density", "coverage", "class_edge90", "class_edge99"]
    data = rows(out / "reconstruction.csv")
    table = markdown(cols, [[r["t"]] + [fmt(r[c]) for c in cols[1:]] for r in data])
    return (f"`ouro reconstruct examples/reconstruct-mnist14-unet.toml --steps {steps} --out runs/recon-mnist14` "
            f"({secs / 60:.1f} min on {processor()}):"), table


def mnist28_run():
    """The class-conditional U-Net run on 28 × 28 MNIST (kept between the tables that read it)."""
    return kept_run("mnist-unet-conditional", "mnist-unet", "--set", "save_train_sets=true")


def run_seconds(folder):
    """Seconds that the commands which made a run folder took, from its provenance.toml."""
    import tomllib
    sessions = tomllib.loads((folder / "provenance.toml").read_text()).get("session", [])
    return sum(float(s["seconds"]) for s in sessions)


# Fashion-MNIST's class names (Xiao et al. 2017), in label order.
FASHION_CLASSES = ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot"]


def image28(example, runs, name, picture, classes):
    """The generation-0 table of class-conditional 28 × 28 runs of `examples/<example>.toml`, one
    row per (denoiser, run folder, its `--set` overrides...) in `runs` (the first, named
    `runs/<name>` in the heading, is the example as it is), followed by each run's per-class
    train-on-synthetic accuracy and the train-on-real accuracy, the same classifier on the same real
    images in every run (class_accuracy.csv, columns labelled by `classes`); copies the first run's
    sample grid to docs/<picture>."""
    out = runs[0][1]
    shutil.copyfile(out / "samples" / "seed-0" / "gen-000.png", ROOT / "docs" / picture)
    header = ["denoiser", "train-on-synthetic accuracy", "real-data accuracy", "precision (features)",
              "recall (features)", "frechet (features)"]
    real = rows(out / "class_accuracy.csv")
    body, per_class = [], []
    for denoiser, folder, *_ in runs:
        r = rows(folder / "metrics.csv")[0]
        body.append([denoiser, fmt(r["synthetic_accuracy"]), fmt(r["real_accuracy"]), fmt(r["precision"]),
                     fmt(r["recall"]), fmt(r["frechet"])])
        per_class.append([f"{denoiser}, trained on samples"] +
                         [f"{float(x['synthetic_accuracy']):.3f}" for x in rows(folder / "class_accuracy.csv")])
    per_class.append(["trained on real images"] + [f"{float(x['real_accuracy']):.3f}" for x in real])
    by_class = markdown(["accuracy on held-out class"] + [classes[int(x["class"])] for x in real], per_class)
    others = "".join(f"; {d}: `{' '.join(sets)}`, {run_seconds(f) / 60:.0f} min" for d, f, *sets in runs[1:])
    return (f"`ouro run examples/{example}.toml --out runs/{name}` ({runs[0][0]}: {run_seconds(out) / 60:.0f} min"
            f"{others}; on {processor()}, generation 0):", markdown(header, body) + "\n\n" + by_class)


def mnist28():
    mlp = ["--set", 'model.denoiser="mlp"']
    mlp_v = mlp + ["--set", 'model.objective="v"']
    runs = [("U-Net", mnist28_run()),
            ("MLP, ε", kept_run("mnist-unet-conditional", "mnist-mlp", *mlp), *mlp),
            ("MLP, v", kept_run("mnist-unet-conditional", "mnist-mlp-v", *mlp_v), *mlp_v)]
    return image28("mnist-unet-conditional", runs, "mnist-unet", "mnist28-unet-gen0.png",
                   [str(c) for c in range(10)])


def fashion28():
    out = kept_run("fashion-unet-conditional", "fashion-unet")
    return image28("fashion-unet-conditional", [("U-Net", out)], "fashion-unet", "fashion28-unet-gen0.png",
                   FASHION_CLASSES)


# Samples per sampler setting of the NFE table, drawn from one fitted model.
NFE_SAMPLES = 2000
# (sampler, σ grid, steps, DDIM's η or None) of the NFE table; the first is the reference.
NFE_SETTINGS = [("ddpm", "schedule", 250, None)] + \
    [("dpmpp-2m", "karras", s, None) for s in (5, 8, 10, 15, 20)] + \
    [("heun", "karras", s, None) for s in (5, 10)] + [("ddim", "schedule", s, None) for s in (10, 20)] + \
    [("ddim", "karras", 20, 1.0), ("euler-maruyama", "karras", 20, None)]


def evaluations(sampler, steps, guided):
    """Network evaluations of a generation (Heun: two per step but the last, to σ = 0), doubled
    with classifier-free guidance (a conditional and an unconditional output per step)."""
    n = 2 * steps - 1 if sampler == "heun" else steps
    return 2 * n if guided else n


def nfe():
    folder = mnist28_run()
    model = folder / "models" / "seed-0" / "gen-000.safetensors"
    real = folder / "train" / "seed-0" / "gen-000.npy"
    features = ROOT / "data" / "features" / "mnist28-mlp.safetensors"
    out = RUNS / "nfe"
    out.mkdir(parents=True, exist_ok=True)
    body, ref = [], None
    guidance = re.search(r"^guidance = ([0-9.eE+-]+)", (folder / "config.toml").read_text(), re.M)
    guided = guidance is not None and float(guidance.group(1)) != 0
    for sampler, grid, steps, eta in NFE_SETTINGS:
        drawn = out / f"{sampler}-{grid}-{steps}{'' if eta is None else f'-eta{eta}'}.npy"
        stochastic = [] if eta is None else ["--set", f"eta={eta}"]
        secs = run("sample", str(model), "--n", str(NFE_SAMPLES), "--out", str(drawn), "--force",
                   "--set", f"sampler={sampler}", "--set", f"sigma_grid={grid}", "--set", f"sample_steps={steps}",
                   *stochastic)
        result = subprocess.run([str(OURO), "eval", str(real), str(drawn), "--features", str(features),
                                 "--metrics", "frechet,precision,recall", "--json"], cwd=ROOT, check=True,
                                capture_output=True, text=True)
        m = json.loads(result.stdout)
        fd = float(m["frechet"])
        ref = fd if ref is None else ref
        name = sampler if eta is None else f"{sampler} (η = {eta:g})"
        body.append([name, grid, str(steps), str(evaluations(sampler, steps, guided)), fmt(fd), f"{fd / ref:.3f}",
                     fmt(m["precision"]), fmt(m["recall"]), f"{secs:.0f}"])
    header = ["sampler", "σ grid", "steps", "network evaluations", "frechet (features)", "÷ DDPM 250",
              "precision (features)", "recall (features)", "seconds"]
    return (f"`python3 docs/make_tables.py nfe`: {NFE_SAMPLES} samples of the model of `runs/mnist-unet` per "
            f"setting (`ouro sample --set sampler=… --set sigma_grid=… --set sample_steps=…`), feature Fréchet "
            f"distance to its 50 000 training images, {processor()}:"), markdown(header, body)


def ring():
    out = RUNS / "ring"
    secs = run("run", "examples/ring-mlp-replace.toml", "--out", str(out), "--force", "--quiet")
    cols = ["off_mode", "modes_hit", "precision", "coverage", "mmd2", "mmd2_biased", "cov_trace_ratio"]
    return f"`ouro run examples/ring-mlp-replace.toml` ({secs:.0f} s):", metrics_table(out, cols, 4)


def memorization():
    out = RUNS / "memorization"
    cols = ["memorized", "memorized_null", "copies", "authenticity"]
    sets = ["--set", "metrics.names=" + str(cols).replace("'", '"')]
    run("run", "examples/memorization-empirical.toml", "--out", str(out), "--force", "--quiet", *sets)
    kde = RUNS / "memorization-kde"
    run("run", "examples/memorization-empirical.toml", "--out", str(kde), "--force", "--quiet", *sets,
        "--set", 'model.denoiser="kde"', "--set", "model.bandwidth=0.3")
    a, b = rows(out / "metrics.csv"), rows(kde / "metrics.csv")
    header = ["generation"] + [f"empirical: {c}" for c in cols] + ["KDE h = 0.3: memorized", "memorized_null"]
    body = [[x["generation"]] + [fmt(x[c]) for c in cols] + [fmt(y["memorized"]), fmt(y["memorized_null"])]
            for x, y in zip(a, b)]
    head = ("`ouro run examples/memorization-empirical.toml --set 'metrics.names=[\"memorized\", "
            "\"memorized_null\", \"copies\", \"authenticity\"]'`, and the same with "
            "`--set model.denoiser='\"kde\"' --set model.bandwidth=0.3`:")
    return head, markdown(header, body)


def processor():
    """The processor's model name and thread count, as lscpu prints them."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), "?")
    cpus = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("CPU(s)")), "?")
    return f"{name}, {cpus} CPUs"


def timings():
    fresh = ["run", "examples/fresh-kde.toml", "--out", str(RUNS / "fresh-kde"), "--force", "--quiet"]
    body = [
        ["`ouro demo`", f"{run('demo', '--out', str(RUNS / 'demo')):.1f} s"],
        ["`ouro run examples/fresh-kde.toml --quiet` (N = 100 000, 20 generations, default metrics)",
         f"{run(*fresh):.1f} s"],
        ["the same with `--threads 1`", f"{run(*fresh, '--threads', '1'):.1f} s"],
        ["the same without metrics (`--set 'metrics.names=[]'`): the loop alone",
         f"{run(*fresh, '--set', 'metrics.names=[]'):.2f} s"],
    ]
    head = f"Wall times of a release build on {processor()} (`python3 docs/make_tables.py timings`):"
    return head, markdown(["job", "time"], body)


def summary_at(folder, metric, generation):
    """{cell: (axis value of the first axis, mean, se)} of `metric` at `generation` in a study."""
    out = {}
    with open(folder / "summary.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        for r in reader:
            row = dict(zip(header, r))
            if row["metric"] == metric and int(row["generation"]) == generation:
                out[int(row["cell"])] = (r[1], float(row["mean"]), float(row["se"]))
    return out


def studies():
    """Both example studies with --jobs 2; their pictures go to docs/."""
    lines = []
    for name in ("study-fresh-alpha", "study-augment-lambda"):
        out = RUNS / name
        secs = run("sweep", f"examples/{name}.toml", "--out", str(out), "--force", "--quiet", "--jobs", "2")
        shutil.copyfile(out / "study.png", ROOT / "docs" / f"{name}.png")
        lines.append((name, secs))
    # the fresh-α study against Khelifa et al.'s closed form at the last generation
    sigma2, h2, g = 0.36, 0.36, 19
    alpha = summary_at(RUNS / "study-fresh-alpha", "second_moment", g)
    body = []
    for cell in sorted(alpha):
        a, mean, se = alpha[cell]
        a = float(a)
        theory = 25.6 + 10 * (sigma2 + h2 * (1 - (1 - a) ** (g + 1)) / a)
        body.append([f"α = {a}", f"{mean:.2f} ± {se:.2f}", f"{theory:.2f}"])
    lam = summary_at(RUNS / "study-augment-lambda", "cov_trace_ratio", 29)
    shift = summary_at(RUNS / "study-augment-lambda", "mean_shift", 29)
    for cell in sorted(lam):
        l, mean, se = lam[cell]
        body.append([f"λ = {l}", f"cov_trace_ratio {mean:.3f} ± {se:.3f}, mean_shift {shift[cell][1]:.3f}",
                     "cov_trace_ratio 1"])
    times = ", ".join(f"`{n}` {s:.0f} s" for n, s in lines)
    head = (f"`ouro sweep examples/study-fresh-alpha.toml --jobs 2` (second moment at generation 19) and "
            f"`examples/study-augment-lambda.toml` (generation 29), mean ± se over seeds, on {processor()}: {times}:")
    return head, markdown(["cell", "measured", "theory"], body)


def claims():
    """`ouro reproduce` for every paper at full scale; the figures go to docs/."""
    body, times, figures = [], [], []
    for paper in ["khelifa2026", "bertrand2024", "yi2023", "gerstgrasser2024", "fu2024", "yamaguchi2023"]:
        folder = RUNS / f"reproduce-{paper}"
        secs = run("reproduce", paper, "--out", str(folder), "--force")
        times.append(f"`{paper}` {secs:.0f} s")
        for fig in sorted(folder.glob("figure-*.png")):
            name = f"reproduce-{paper}-{fig.name[len('figure-'):]}"
            shutil.copyfile(fig, ROOT / "docs" / name)
            figures.append(f"[{paper}: {fig.stem[len('figure-'):]}](docs/{name})")
        for r in rows(folder / "claims.csv"):
            cell = lambda t: t.replace("|", "\\|")
            body.append([paper, cell(r["statement"]), cell(r["rule"]), cell(r["measured"]), f"**{r['verdict']}**"])
    head = (f"`ouro reproduce PAPER --out DIR` on {processor()} ({', '.join(times)}); figures: "
            f"{', '.join(figures)}:")
    return head, markdown(["paper", "claim", "checked by", "measured", "verdict"], body)


def fuzz():
    """The executions of every fuzz target so far, from fuzz/runs.tsv (runs nothing)."""
    with open(ROOT / "fuzz" / "runs.tsv", newline="") as f:
        runs = list(csv.DictReader(f, delimiter="\t"))
    body = []
    for target in ["config", "npy", "csv", "idx", "safetensors", "study"]:
        mine = [r for r in runs if r["target"] == target]
        execs = sum(int(r["executions"]) for r in mine)
        secs = sum(int(r["seconds"]) for r in mine)
        crashes = sum(int(r["crashes"]) for r in mine)
        asan = sum(int(r["executions"]) for r in mine if r["sanitizer"] == "address")
        corpus = len(list((ROOT / "fuzz" / "corpus" / target).iterdir()))
        body.append([target, f"{execs:,}".replace(",", " "), f"{asan:,}".replace(",", " "),
                     f"{secs / 60:.0f} min", str(len(mine)), str(crashes), str(corpus)])
    head = "From `fuzz/runs.tsv` (`python3 docs/make_tables.py fuzz`):"
    header = ["target", "executions", "of which with AddressSanitizer", "fuzzing time", "runs",
              "failures found (crash, timeout, out of memory; all fixed)", "corpus inputs"]
    return head, markdown(header, body)


def browser():
    """Headless Chromium (Debian's `chromium`), or None."""
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(b)), None)


def screenshot(page, png, width=1280, height=1400):
    """The top `width` × `height` pixels of an HTML page, taken by headless Chromium."""
    chrome = browser()
    if chrome is None:
        sys.exit("the report screenshots need chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chrome, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png}", page.resolve().as_uri()],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def reports():
    """The report pages of a run, a study, an image run and a reproduction: their sizes, and
    screenshots of the first two in docs/."""
    jobs = [
        ("run, 20 generations", ["run", "examples/fresh-kde.toml", "--out", "RUNS/report-run", "--force",
                                 "--quiet", "--report"]),
        ("study, 4 cells × 5 seeds × 20 generations",
         ["sweep", "examples/study-fresh-alpha.toml", "--out", "RUNS/report-study", "--force", "--quiet",
          "--report"]),
        ("image run (MNIST 14×14, class-conditional)",
         ["run", "examples/mnist14-conditional-replace.toml", "--out", "RUNS/report-mnist14", "--force",
          "--quiet", "--report"]),
        ("reproduction (three reconstruction sweeps)",
         ["reproduce", "yamaguchi2023", "--out", "RUNS/report-yamaguchi2023", "--force", "--report"]),
    ]
    body = []
    for what, args in jobs:
        args = [a.replace("RUNS", str(RUNS)) for a in args]
        run(*args)
        folder = pathlib.Path(args[args.index("--out") + 1])
        start = time.time()
        run("report", str(folder))
        secs = time.time() - start
        size = (folder / "report.html").stat().st_size
        shown = " ".join(a.replace(str(RUNS) + "/", "runs/") for a in args if a not in ("--force", "--quiet"))
        body.append([what, f"`ouro {shown}`", f"{size / 1000:.0f} KB", f"{secs:.2f} s"])
    screenshot(RUNS / "report-run" / "report.html", ROOT / "docs" / "report-run.png")
    screenshot(RUNS / "report-study" / "report.html", ROOT / "docs" / "report-study.png", height=1700)
    head = (f"Page sizes and the time `ouro report DIR` takes to rewrite each, on {processor()} "
            "(`python3 docs/make_tables.py reports`; screenshots by headless Chromium):")
    return head, markdown(["page", "command", "size", "ouro report"], body)


def collapse():
    """Every way of stopping collapse that ouro runs, on one target, learner and set of seeds
    (examples/curate-*.toml): the last generation's mode coverage, spread and MMD²."""
    plain = "examples/curate-ring-replace.toml"
    jobs = [
        ("none: fully synthetic (`replace`)", plain, []),
        ("fresh real data, α = 0.2 (`fresh`)", plain,
         ["--set", 'loop.schedule="fresh"', "--set", "loop.fresh_fraction=0.2"]),
        ("accumulate real and all synthetic data (`accumulate`)", plain,
         ["--set", 'loop.schedule="accumulate"']),
        ("fixed real set + as many samples, unweighted (`augment`, λ = 1)",
         "examples/curate-real-weight.toml", ["--set", "loop.real_weight=0.5"]),
        ("… real points weighted w = 0.618 (`real_weight`)", "examples/curate-real-weight.toml", []),
        ("reward: 1 of K = 4 by target log-density (`filter = \"reward\"`)",
         "examples/curate-reward.toml", []),
        ("verifier: target log-density ≥ −4.5 (`filter = \"verifier\"`)",
         "examples/curate-verifier.toml", []),
        ("likelihood-rank, densest half (`keep = \"top\"`)", "examples/curate-rank.toml",
         ["--set", 'loop.curate.keep="top"']),
        ("likelihood-rank, random half (`keep = \"random\"`)", "examples/curate-rank.toml",
         ["--set", 'loop.curate.keep="random"']),
        ("likelihood-rank, least dense half (`keep = \"bottom\"`)", "examples/curate-rank.toml", []),
        ("expert correction γ = 0.5 (`correct`)", "examples/curate-correct.toml", []),
        ("expert correction γ = 1", "examples/curate-correct.toml", ["--set", "loop.curate.correct=1.0"]),
        ("Neon, w = 0.3 (`[loop.neon]`)", "examples/curate-neon.toml", ["--set", "loop.neon.weight=0.3"]),
        ("Neon, w = 1", "examples/curate-neon.toml", []),
    ]
    cols = ["modes_hit", "mode_tv", "cov_trace_ratio", "mmd2"]
    body, total = [], 0.0
    for i, (what, config, sets) in enumerate(jobs):
        out = RUNS / f"collapse-{i:02d}"
        total += run("run", config, "--out", str(out), "--force", "--quiet", *sets)
        data = [r for r in rows(out / "metrics.csv")]
        last = max(int(r["generation"]) for r in data)
        cells = []
        for c in cols:
            v = [float(r[c]) for r in data if int(r["generation"]) == last]
            m = sum(v) / len(v)
            se = (sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v)) ** 0.5
            cells.append(f"{fmt(m)} ± {fmt(se)}")
        shown = " ".join([config] + [f"--set '{a}'" if "=" in a else "" for a in sets]).replace("  ", " ")
        body.append([what, f"`{shown.strip()}`"] + cells)
    head = (f"Generation 39 of an 8-component GMM on a ring of 8 Gaussians, 100 training points a generation, "
            f"seeds 0–9, mean ± se over seeds (real data: 8 modes hit, mode_tv ≈ 0.14 at this sample size, "
            f"cov_trace_ratio 1, mmd2 ≈ 0); `python3 docs/make_tables.py collapse`, {total:.0f} s on {processor()}:")
    return head, markdown(["method", "command", "modes_hit", "mode_tv", "cov_trace_ratio", "mmd2"], body)


TABLES = {
    "timings": timings,
    "fuzz": fuzz,
    "memorization": memorization,
    "ring": ring,
    "reconstruct": reconstruct,
    "reconstruct-conditional": reconstruct_conditional,
    "digits-conditional": digits_conditional,
    "mnist14": mnist14,
    "mnist14-unet": mnist14_unet,
    "mnist14-unet-fresh": mnist14_unet_fresh,
    "mnist14-unet-objective": mnist14_unet_objective,
    "mnist14-unet-fresh-objective": mnist14_unet_fresh_objective,
    "reconstruct-unet": reconstruct_unet,
    "mnist28": mnist28,
    "fashion28": fashion28,
    "nfe": nfe,
    "studies": studies,
    "claims": claims,
    "reports": reports,
    "collapse": collapse,
}


def main(argv):
    write = "--write" in argv
    readme = (ROOT / "README.md").read_text()
    # Without names: the tables README.md shows. A table it does not show is printed when named.
    names = [a for a in argv if not a.startswith("--")] or [
        n for n in TABLES if f"<!-- table: {n} -->" in readme]
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        sys.exit(f"unknown table {unknown[0]}; the tables are: {', '.join(TABLES)}")
    if not OURO.exists():
        sys.exit("build ouro first: cargo build --release")
    RUNS.mkdir(parents=True, exist_ok=True)
    for name in names:
        head, table = TABLES[name]()
        block = f"<!-- table: {name} -->\n{head}\n\n{table}\n<!-- /table -->"
        print(block + "\n")
        pattern = re.compile(rf"<!-- table: {re.escape(name)} -->.*?<!-- /table -->", re.S)
        if write:
            if not pattern.search(readme):
                print(f"README.md has no <!-- table: {name} --> block: printed only", file=sys.stderr)
                continue
            readme = pattern.sub(lambda _: block, readme)
    if write:
        (ROOT / "README.md").write_text(readme)


if __name__ == "__main__":
    main(sys.argv[1:])
