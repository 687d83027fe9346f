//! The dependency rules of ARCHITECTURE.md, read from the source: which
//! module's files name which other modules (`crate::x` anywhere in code,
//! comments left out). `model` is a leaf, `config` and `detect` import only
//! `model`, and no two modules import each other, directly or around a
//! circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module -> the modules its files name.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let module = Path::new(first)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let deps = g.entry(module.clone()).or_default();
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let name: String = code[i + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module && name != "VERSION" {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    g
}

#[test]
fn the_model_is_a_leaf() {
    let g = graph();
    assert!(g.contains_key("model"), "src/model exists");
    assert_eq!(
        g["model"],
        BTreeSet::new(),
        "model imports nothing of the crate"
    );
}

#[test]
fn the_detector_and_the_config_import_only_the_model() {
    let g = graph();
    let only_model: BTreeSet<String> = ["model".to_string()].into();
    for m in ["detect", "config"] {
        assert!(
            g[m].is_subset(&only_model),
            "{m} imports {:?}; it may import only model",
            g[m]
        );
    }
}

#[test]
fn no_import_circle() {
    let g = graph();
    // Depth-first search; a module met again on the current path closes a circle.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import circle: {} -> {m}", path[at..].join(" -> "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            visit(d, g, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(m, &g, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_rules_are_read_from_real_imports() {
    // The reader itself must see edges, or the rules above pass vacuously.
    let g = graph();
    assert!(g["detect"].contains("model"), "{:?}", g["detect"]);
    assert!(g["daemon"].contains("probe") && g["daemon"].contains("export"));
}

/// The `.rs` files under `dir` (relative to the repository), with their
/// lengths in lines.
fn rust_files(dir: &str) -> Vec<(String, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.join(dir)];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let n = std::fs::read_to_string(&path).unwrap().lines().count();
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                files.push((rel, n));
            }
        }
    }
    files
}

/// The files of `dirs` over 600 lines, each named with its length; fails
/// too when a folder holds fewer files than `least`, so a walk that reads
/// nothing cannot pass.
fn over_600(dirs: &[(&str, usize)]) -> Vec<String> {
    let mut long = Vec::new();
    for (dir, least) in dirs {
        let files = rust_files(dir);
        assert!(
            files.len() >= *least,
            "the walk reads {dir}: {} files",
            files.len()
        );
        long.extend(
            files
                .into_iter()
                .filter(|(_, n)| *n > 600)
                .map(|(f, n)| format!("{f} ({n} lines)")),
        );
    }
    long.sort();
    long
}

/// Every source file under 600 lines: one concern each, split before it
/// grows two.
#[test]
fn no_source_file_is_over_600_lines() {
    let long = over_600(&[("src", 51)]);
    assert!(long.is_empty(), "split these: {long:?}");
}

/// The same for the tests, the benchmarks and the evaluation set: a test
/// file of one concern, or a folder of them.
#[test]
fn no_test_or_bench_file_is_over_600_lines() {
    let long = over_600(&[("tests", 40), ("bench", 10), ("kit", 5)]);
    assert!(long.is_empty(), "split these: {long:?}");
}

/// The probe knows nothing of where its results go, and the statistics
/// only the vocabulary they count in.
#[test]
fn the_probe_and_the_stats_stay_low() {
    let g = graph();
    for (m, never) in [("probe", ["export", "server"])] {
        for n in never {
            assert!(!g[m].contains(n), "{m} imports {n}: {:?}", g[m]);
        }
    }
    let stats: BTreeSet<String> = g["stats"]
        .iter()
        .filter(|d| *d != "model")
        .cloned()
        .collect();
    assert!(
        stats.is_empty(),
        "stats imports {stats:?}; it may import only model"
    );
}

/// The wire documents are data and their wording: the vocabulary and the
/// findings they carry, nothing that runs. What reads the stats into a
/// document lives with its reader.
#[test]
fn the_wire_documents_import_only_the_vocabulary() {
    let g = graph();
    assert!(g["wire"].contains("model"), "the walk reads wire");
    let allowed: BTreeSet<String> = ["model".to_string(), "detect".to_string()].into();
    let other: Vec<&String> = g["wire"].difference(&allowed).collect();
    assert!(
        other.is_empty(),
        "wire imports {other:?}; it may import only model and detect"
    );
}

/// No file reaches above its own parent (`super::super`): a child names
/// what it shares with its siblings by its crate path, so moving a file
/// never silently rebinds what it imports.
#[test]
fn no_child_reaches_past_its_parent() {
    let mut reaching = Vec::new();
    for (file, _) in rust_files("src") {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&file)).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("super::super") {
                reaching.push(format!("{file}:{}", i + 1));
            }
        }
    }
    assert!(
        reaching.is_empty(),
        "name these by their crate path: {reaching:?}"
    );
}
