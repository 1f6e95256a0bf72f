//! `ouro report` and `ouro compare`: the pages of a run, a study, an image run, a reconstruction
//! and a reproduction are self-contained, and render in a real browser (headless Chromium) with no
//! console error, every image loaded, the expected sections and captions, working cell switches,
//! and no sideways scrolling on a phone's width. Screenshots at a laptop's and a phone's width go
//! to `target/tmp/report-screenshots/`. Without Chromium the browser half is skipped with a
//! printed reason (and fails with OURO_REQUIRE_CHROMIUM set, as in `.ci/run`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ouro(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ouro"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = ouro(args);
    assert!(
        o.status.success(),
        "ouro {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one-line error of a command that must fail with exit status 2.
fn fails(args: &[&str]) -> String {
    let o = ouro(args);
    assert_eq!(o.status.code(), Some(2), "ouro {}", args.join(" "));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What every page must be: one file that fetches nothing, with the named sections.
fn check_static(page: &Path, sections: &[&str]) -> String {
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for remote in [
        "http://",
        "https://",
        "<link",
        " src=\"/",
        " src=\"file",
        "@import",
        "url(",
    ] {
        assert!(!html.contains(remote), "{}: {remote}", page.display());
    }
    for id in sections {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "{}: no section {id}",
            page.display()
        );
    }
    html
}

/// The browser, or None with the reason printed (a failure with OURO_REQUIRE_CHROMIUM set).
fn chromium() -> Option<PathBuf> {
    let found = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        let why = "no chromium on PATH (Debian: apt-get install chromium)";
        assert!(
            std::env::var_os("OURO_REQUIRE_CHROMIUM").is_none(),
            "OURO_REQUIRE_CHROMIUM is set but {why}"
        );
        eprintln!("browser checks skipped: {why}");
    }
    found
}

/// Observes the page in the browser: errors as they happen, then, once loaded, its images,
/// sections, captions and size, and what the first cell switch does.
const PROBE_HEAD: &str = r#"<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) { __errors.push('failed to load ' + String(t.src || t.href).slice(0, 60)); }
  else { __errors.push('error: ' + e.message); }
}, true);
window.addEventListener('unhandledrejection', function (e) { __errors.push('rejection: ' + e.reason); });
(function () { var f = console.error; console.error = function () { __errors.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); f.apply(console, arguments); }; })();
</script>"#;

const PROBE_TAIL: &str = r#"<script>
window.addEventListener('load', function () {
  var r = {errors: __errors};
  var imgs = Array.prototype.slice.call(document.images);
  r.images = imgs.length;
  r.broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; });
  r.sections = Array.prototype.map.call(document.querySelectorAll('section'), function (s) { return s.id; });
  r.captions = Array.prototype.map.call(document.querySelectorAll('figcaption, caption'), function (c) { return c.textContent; });
  r.charts = document.querySelectorAll('svg.chart').length;
  r.ragged = Array.prototype.filter.call(document.querySelectorAll('table'), function (t) {
    var head = t.querySelectorAll('thead th').length;
    return Array.prototype.some.call(t.querySelectorAll('tbody tr'), function (tr) { return tr.children.length !== head; });
  }).map(function (t) { var c = t.querySelector('caption'); return c ? c.textContent.slice(0, 60) : '?'; });
  r.height = document.documentElement.scrollHeight;
  r.overflow = document.documentElement.scrollWidth - window.innerWidth;
  var box = document.querySelector('input[data-switch]');
  if (box) {
    var g = box.getAttribute('data-switch');
    var els = Array.prototype.slice.call(document.querySelectorAll('[data-group="' + g + '"]'));
    var shown = function () { return els.filter(function (e) { return getComputedStyle(e).display !== 'none'; }).length; };
    var before = shown();
    box.click();
    var hidden = els.length - shown();
    box.click();
    r.toggle = {elements: els.length, before: before, hidden: hidden, after: shown()};
  }
  var pre = document.createElement('pre');
  pre.id = 'ouro-probe';
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"#;

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chrome(
    browser: &Path,
    profile: &Path,
    width: usize,
    height: usize,
    extra: &[&str],
    url: &str,
) -> String {
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Renders `page` at a laptop's width (1280) and a phone's (390), checks what the browser
/// reports and takes a screenshot of the whole page at each; returns the laptop probe.
fn check_in_browser(
    page: &Path,
    name: &str,
    images: u64,
    sections: &[&str],
    captions: &[&str],
) -> Option<Value> {
    let browser = chromium()?;
    let work = tempfile::tempdir().unwrap();
    let html = std::fs::read_to_string(page).unwrap();
    let probed = html
        .replacen("<head>", &format!("<head>{PROBE_HEAD}"), 1)
        .replacen("</body>", &format!("{PROBE_TAIL}</body>"), 1);
    let probe_path = work.path().join("probe.html");
    std::fs::write(&probe_path, probed).unwrap();
    let mut laptop = None;
    for (device, width) in [("laptop", 1280), ("phone", 390)] {
        let profile = work.path().join(format!("profile-{device}"));
        let dom = chrome(
            &browser,
            &profile,
            width,
            900,
            &["--virtual-time-budget=10000", "--dump-dom"],
            &format!("file://{}", probe_path.display()),
        );
        let start = dom.find("<pre id=\"ouro-probe\">").expect("the probe ran") + 21;
        let end = start + dom[start..].find("</pre>").unwrap();
        let json = dom[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        let r: Value = serde_json::from_str(&json).unwrap();
        let at = format!("{name} at {width} px");
        assert_eq!(r["errors"], Value::Array(vec![]), "{at}: errors");
        assert_eq!(r["images"].as_u64().unwrap(), images, "{at}: images");
        assert_eq!(r["broken"], Value::Array(vec![]), "{at}: images not loaded");
        let ids: Vec<&str> = r["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for id in sections {
            assert!(ids.contains(id), "{at}: no section {id} in {ids:?}");
        }
        let all: String = r["captions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        for c in captions {
            assert!(all.contains(c), "{at}: no caption with {c:?}");
        }
        assert!(r["charts"].as_u64().unwrap() > 0, "{at}: no chart");
        assert_eq!(
            r["ragged"],
            Value::Array(vec![]),
            "{at}: tables whose rows and header differ in length"
        );
        assert!(
            r["overflow"].as_i64().unwrap() <= 1,
            "{at}: the page scrolls sideways by {} px",
            r["overflow"]
        );
        if let Some(t) = r.get("toggle") {
            let n = t["elements"].as_u64().unwrap();
            assert!(n > 0, "{at}: the first switch governs nothing");
            assert_eq!(t["before"], n, "{at}");
            assert_eq!(t["hidden"], n, "{at}: unticking a cell hides its lines");
            assert_eq!(t["after"], n, "{at}: ticking it again shows them");
        }
        let height = r["height"].as_u64().unwrap().clamp(400, 16000) as usize;
        let shot = screenshots().join(format!("{name}-{device}.png"));
        chrome(
            &browser,
            &profile,
            width,
            height,
            &[&format!("--screenshot={}", shot.display())],
            &format!("file://{}", page.canonicalize().unwrap().display()),
        );
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 10_000,
            "{}",
            shot.display()
        );
        println!("screenshot: {}", shot.display());
        if device == "laptop" {
            laptop = Some(r);
        }
    }
    laptop
}

#[test]
fn a_run_page_shows_its_metrics_theory_and_samples_and_passes_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let stdout = ok(&[
        "run",
        "examples/fresh-kde.toml",
        "--out",
        s(&out),
        "--report",
        "--quiet",
    ]);
    assert!(stdout.is_empty(), "{stdout}");
    let page = out.join("report.html");
    let html = check_static(
        &page,
        &[
            "experiment",
            "metrics",
            "theory",
            "last",
            "samples",
            "provenance",
        ],
    );
    // 20 generations: charts, 8 thumbnails and the tables in well under a megabyte.
    let size = std::fs::metadata(&page).unwrap().len();
    assert!(size < 400_000, "{size} bytes");
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 6);
    assert_eq!(html.matches("data:image/png;base64,").count(), 8);
    assert!(html.contains("examples/fresh-kde.toml --out"));
    assert!(html.contains("Khelifa"));
    let prov = std::fs::read_to_string(out.join("provenance.toml")).unwrap();
    assert!(
        prov.contains("command = \"ouro run examples/fresh-kde.toml"),
        "{prov}"
    );
    check_in_browser(
        &page,
        "run",
        8,
        &["experiment", "metrics", "theory", "samples", "provenance"],
        &[
            "second_moment",
            "Dashed: the closed form",
            "Generation 19",
            "The closed form at the last generation",
        ],
    );
    // `ouro report` writes the same sections anywhere asked.
    let elsewhere = dir.path().join("page.html");
    ok(&["report", s(&out), "--out", s(&elsewhere)]);
    check_static(&elsewhere, &["metrics", "samples"]);
}

#[test]
fn a_study_page_draws_a_line_per_cell_with_switches() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    ok(&[
        "sweep",
        "examples/study-fresh-alpha.toml",
        "--out",
        s(&out),
        "--quiet",
        "--report",
        "--set",
        "generations=4",
        "--set",
        "loop.train_size=20000",
    ]);
    let page = out.join("report.html");
    let html = check_static(
        &page,
        &["experiment", "metrics", "last", "samples", "provenance"],
    );
    assert_eq!(html.matches("checked data-switch=").count(), 4);
    let probe = check_in_browser(
        &page,
        "study",
        4,
        &["experiment", "metrics", "last", "samples"],
        &[
            "fresh_fraction = 0.1",
            "Each line is a mean over seeds",
            "The last generation of each",
        ],
    );
    if let Some(p) = probe {
        assert!(
            p.get("toggle").is_some(),
            "the study page has cell switches"
        );
    }
    // Comparing the study with one of its own cells: one page, the cells and the run overlaid.
    let cmp = dir.path().join("cmp.html");
    ok(&[
        "compare",
        s(&out),
        s(&out.join("cells").join("001")),
        "--out",
        s(&cmp),
    ]);
    let html = check_static(&cmp, &["metrics", "last", "experiments", "provenance"]);
    assert_eq!(html.matches("checked data-switch=").count(), 5);
    check_in_browser(&cmp, "compare", 0, &["metrics", "last"], &["second_moment"]);
}

#[test]
fn an_image_run_page_shows_the_real_images_and_sample_grids() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("digits");
    ok(&[
        "run",
        "examples/digits-gmm-accumulate.toml",
        "--out",
        s(&out),
        "--quiet",
        "--report",
        "--set",
        "generations=3",
    ]);
    let page = out.join("report.html");
    let html = check_static(&page, &["metrics", "samples"]);
    assert_eq!(
        html.matches("data:image/png;base64,").count(),
        4,
        "real + 3 generations"
    );
    check_in_browser(
        &page,
        "image-run",
        4,
        &["metrics", "samples"],
        &["Real images", "Generation 2"],
    );
}

#[test]
fn reconstruction_and_reproduction_pages_render() {
    let dir = tempfile::tempdir().unwrap();
    let recon = dir.path().join("recon");
    ok(&[
        "reconstruct",
        "examples/reconstruct-digits.toml",
        "--steps",
        "0,300,1000",
        "--out",
        s(&recon),
        "--report",
        "--set",
        "model.train_steps=200",
    ]);
    let page = recon.join("report.html");
    let html = check_static(&page, &["experiment", "measures", "pictures", "provenance"]);
    assert_eq!(
        html.matches("data:image/png;base64,").count(),
        4,
        "original + 3 times"
    );
    check_in_browser(
        &page,
        "reconstruction",
        4,
        &["measures", "pictures"],
        &["rms_distance", "t = 300", "Original"],
    );
    let repro = dir.path().join("repro");
    ok(&[
        "reproduce",
        "gerstgrasser2024",
        "--quick",
        "--out",
        s(&repro),
        "--report",
    ]);
    let page = repro.join("report.html");
    let html = check_static(&page, &["claims", "accumulate", "replace", "provenance"]);
    assert!(html.contains(r#"<span class="verdict holds">holds</span>"#));
    check_in_browser(
        &page,
        "reproduction",
        0,
        &["claims", "accumulate"],
        &["Each claim of the paper"],
    );
}

#[test]
fn bad_report_arguments_are_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&["report", s(&dir.path().join("none"))]);
    assert!(err.contains("no such folder"), "{err}");
    let err = fails(&["report", s(dir.path())]);
    assert!(err.contains("not a folder ouro wrote"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let run = dir.path().join("run");
    ok(&[
        "run",
        "examples/replace-gaussian.toml",
        "--out",
        s(&run),
        "--quiet",
        "--set",
        "generations=3",
    ]);
    // A damaged file is named; a damaged provenance.toml only loses the provenance table.
    std::fs::write(run.join("provenance.toml"), "session = 3").unwrap();
    ok(&["report", s(&run)]);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("The commands that wrote this folder are not known"));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    std::fs::write(run.join("metrics.csv"), "seed,generation,x\n0,zero,1\n").unwrap();
    let err = fails(&["report", s(&run)]);
    assert!(
        err.contains("metrics.csv") && err.contains("not a metrics.csv written by ouro"),
        "{err}"
    );
    std::fs::write(run.join("metrics.csv"), metrics).unwrap();
    let err = fails(&[
        "report",
        s(&run),
        "--out",
        s(&dir.path().join("missing").join("r.html")),
    ]);
    assert!(err.contains("its folder does not exist"), "{err}");
    let err = fails(&[
        "compare",
        s(&run),
        s(&dir.path().join("none")),
        "--out",
        s(&dir.path().join("c.html")),
    ]);
    assert!(err.contains("no such folder"), "{err}");
    assert!(!dir.path().join("c.html").exists());
    // One folder is not a comparison: clap's usage error.
    let o = ouro(&["compare", s(&run)]);
    assert_eq!(o.status.code(), Some(2));
    let err = fails(&[
        "sweep",
        "examples/study-fresh-alpha.toml",
        "--out",
        s(&dir.path().join("st")),
        "--executor",
        "slurm",
        "--report",
    ]);
    assert!(err.contains("ouro report"), "{err}");
}
