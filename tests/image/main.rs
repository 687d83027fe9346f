//! The container image, without a Docker engine: its build stage compiles
//! from exactly the paths the Dockerfile copies, with passive mode built in;
//! its final stage is the static binary alone, run as 65532. And `build.rs`
//! tries the BPF program again on the next build once clang works, with no
//! source or environment change (installing clang changes nothing cargo
//! watches).
//!
//! The scratch builds share `<target>/tmp/image-test`, so dependencies are
//! compiled once; each run compiles tailprobe itself twice (debug, no debug
//! info). Needs clang and libbpf-dev, as the image's build stage does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const DOCKERFILE: &str = include_str!("../../Dockerfile");
const DOCKERIGNORE: &str = include_str!("../../.dockerignore");

/// One `FROM` and the instructions after it, comments dropped and
/// continuation lines joined.
struct Stage {
    from: String,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn name(&self) -> Option<&str> {
        let words: Vec<&str> = self.from.split_whitespace().collect();
        match words.as_slice() {
            [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name),
            _ => None,
        }
    }

    fn image(&self) -> &str {
        self.from.split_whitespace().next().unwrap_or_default()
    }

    fn args<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
    }
}

fn stages(text: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                logical.push(std::mem::take(&mut pending));
            }
        }
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let line = line.trim();
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let (keyword, args) = (keyword.to_ascii_uppercase(), args.trim().to_string());
        if keyword == "FROM" {
            stages.push(Stage {
                from: args,
                instructions: Vec::new(),
            });
        } else {
            let stage = stages
                .last_mut()
                .unwrap_or_else(|| panic!("{keyword} before any FROM in the Dockerfile"));
            stage.instructions.push((keyword, args));
        }
    }
    stages
}

/// The final stage, and the stage its `COPY --from` names.
fn final_and_build(stages: &[Stage]) -> (&Stage, &Stage) {
    let last = stages.last().expect("the Dockerfile has a FROM");
    let from = last
        .args("COPY")
        .find_map(|a| a.strip_prefix("--from="))
        .and_then(|a| a.split_whitespace().next())
        .expect("the final stage copies from a build stage");
    let build = stages
        .iter()
        .find(|s| s.name() == Some(from))
        .unwrap_or_else(|| panic!("no stage named {from}"));
    (last, build)
}

/// One `COPY` of the build stage: context paths, and where they land relative
/// to the WORKDIR. Every form this cannot read exactly is an error.
struct CopyStep {
    sources: Vec<String>,
    dest: PathBuf,
    dest_is_dir: bool,
}

fn copies(build: &Stage) -> Result<Vec<CopyStep>, String> {
    let mut workdir: Option<PathBuf> = None;
    let mut copies = Vec::new();
    for (keyword, args) in &build.instructions {
        match keyword.as_str() {
            "WORKDIR" => {
                let dir = PathBuf::from(args);
                workdir = Some(match &workdir {
                    Some(w) if dir.is_relative() => w.join(dir),
                    _ => dir,
                });
            }
            "ADD" => return Err(format!("ADD {args}: only COPY is read")),
            "COPY" => {
                let workdir = workdir
                    .as_ref()
                    .filter(|w| w.is_absolute())
                    .ok_or_else(|| format!("COPY {args}: no absolute WORKDIR before it"))?;
                copies.push(copy(args, workdir)?);
            }
            _ => {}
        }
    }
    if copies.is_empty() {
        return Err("the build stage copies nothing".into());
    }
    Ok(copies)
}

fn copy(args: &str, workdir: &Path) -> Result<CopyStep, String> {
    let unreadable = |why: &str| format!("COPY {args}: {why}");
    let words: Vec<String> = if args.starts_with('[') {
        serde_json::from_str(args).map_err(|e| unreadable(&format!("bad JSON form ({e})")))?
    } else {
        args.split_whitespace().map(str::to_string).collect()
    };
    let mut words = words.into_iter().peekable();
    while let Some(flag) = words.next_if(|w| w.starts_with("--")) {
        // Owners, modes and layer linking change no path.
        let harmless =
            ["--chown=", "--chmod="].iter().any(|f| flag.starts_with(f)) || flag == "--link";
        if !harmless {
            return Err(unreadable(&format!("the flag {flag}")));
        }
    }
    let mut words: Vec<String> = words.collect();
    let dest = words
        .pop()
        .filter(|_| !words.is_empty())
        .ok_or_else(|| unreadable("no source and destination"))?;
    for source in &words {
        let path = Path::new(source);
        if source.contains(['*', '?', '[', '$'])
            || source.starts_with("<<")
            || source.contains("://")
            || path.is_absolute()
            || path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(unreadable(&format!("the source {source}")));
        }
    }
    let dest_is_dir = dest.ends_with('/') || words.len() > 1 || dest == ".";
    let dest_path = Path::new(&dest);
    let relative = if dest_path.is_absolute() {
        dest_path
            .strip_prefix(workdir)
            .map_err(|_| unreadable("a destination outside the WORKDIR"))?
            .to_path_buf()
    } else {
        dest_path.to_path_buf()
    };
    if relative
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(unreadable("a destination outside the WORKDIR"));
    }
    Ok(CopyStep {
        sources: words,
        dest: relative,
        dest_is_dir,
    })
}

/// `.dockerignore`'s entries, as paths: a pattern (wildcards, exceptions) is
/// an error, so what is copied never differs from what Docker would send.
fn ignored() -> Vec<PathBuf> {
    DOCKERIGNORE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            assert!(
                !l.contains(['*', '?', '[', '!', '\\']),
                ".dockerignore: {l:?} is a pattern this test cannot read"
            );
            PathBuf::from(l.trim_start_matches('/').trim_end_matches('/'))
        })
        .collect()
}

/// Copies `from` (a context-relative path) to `to` as Docker does: a
/// directory's contents, not the directory.
fn copy_tree(repo: &Path, from: &Path, to: &Path, ignored: &[PathBuf]) {
    if ignored.iter().any(|i| from.starts_with(i)) {
        return;
    }
    let src = repo.join(from);
    let meta = std::fs::metadata(&src)
        .unwrap_or_else(|e| panic!("the Dockerfile copies {}: {e}", from.display()));
    if meta.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        let mut entries: Vec<_> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        for name in entries {
            copy_tree(repo, &from.join(&name), &to.join(&name), ignored);
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&src, to).unwrap();
    }
}

/// A folder removed when the test ends, pass or fail.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("tailprobe-image-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one `cargo build` of the scratch copy said.
struct Build {
    ok: bool,
    stderr: String,
    binary: Option<PathBuf>,
    binary_fresh: bool,
    out_dir: Option<PathBuf>,
}

impl Build {
    fn object_len(&self) -> u64 {
        let out = self.out_dir.as_ref().expect("tailprobe's build script ran");
        std::fs::metadata(out.join("passive.bpf.o"))
            .expect("build.rs always writes passive.bpf.o")
            .len()
    }

    /// `tailprobe check` on a config with passive mode on: its warning
    /// (empty when passive mode can run).
    fn check_warning(&self, scratch: &Path) -> String {
        let config = scratch.join("passive.toml");
        std::fs::write(
            &config,
            "node = \"n1\"\n[passive]\nenabled = true\n\
             [[target]]\nname = \"self\"\nurl = \"http://127.0.0.1:9/\"\nnode = \"n1\"\n",
        )
        .unwrap();
        let out = Command::new(self.binary.as_ref().expect("the binary was built"))
            .arg("check")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "tailprobe check failed: {stderr}");
        stderr
    }
}

fn cargo_build(context: &Path, target_dir: &Path, clang: &Path, require: bool) -> Build {
    let started = Instant::now();
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args([
        "build",
        "--locked",
        "--bin",
        "tailprobe",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(context)
    .env("CARGO_TARGET_DIR", target_dir)
    // No debug info: what is tested needs none, and it halves the time and
    // the disk the shared target takes.
    .env("CARGO_PROFILE_DEV_DEBUG", "false")
    .env("CLANG", clang)
    .env_remove("TAILPROBE_REQUIRE_BPF")
    .stdin(Stdio::null());
    if require {
        cmd.env("TAILPROBE_REQUIRE_BPF", "1");
    }
    let out = cmd.output().expect("cargo runs");
    let mut build = Build {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        binary: None,
        binary_fresh: false,
        out_dir: None,
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let ours = m["package_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("path+file://") && p.contains("#tailprobe@"));
        if !ours {
            continue;
        }
        match m["reason"].as_str() {
            Some("build-script-executed") => {
                build.out_dir = m["out_dir"].as_str().map(PathBuf::from);
            }
            Some("compiler-artifact") if m["target"]["name"] == "tailprobe" => {
                if let Some(exe) = m["executable"].as_str() {
                    build.binary = Some(exe.into());
                    build.binary_fresh = m["fresh"] == true;
                }
            }
            _ => {}
        }
    }
    eprintln!(
        "cargo build (CLANG={}, required {require}): {} in {:.1?}",
        clang.display(),
        if build.ok { "built" } else { "failed" },
        started.elapsed()
    );
    build
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_final_stage_is_the_static_binary_alone_run_as_65532() {
    let stages = stages(DOCKERFILE);
    let (last, build) = final_and_build(&stages);
    assert_eq!(last.image(), "scratch");
    assert_eq!(last.name(), None);
    let workdir = build.args("WORKDIR").last().expect("a WORKDIR");
    let copy: Vec<&str> = last.args("COPY").collect();
    assert_eq!(
        copy,
        [format!(
            "--from={} {workdir}/target/release/tailprobe /tailprobe",
            build.name().unwrap()
        )]
    );
    assert!(
        last.args("RUN").next().is_none(),
        "nothing can run in the final stage: it has no shell"
    );
    let user: Vec<&str> = last.args("USER").collect();
    assert!(matches!(user[..], ["65532" | "65532:65532"]), "{user:?}");
    assert_eq!(last.args("EXPOSE").collect::<Vec<_>>(), ["9797 9798"]);
    assert_eq!(
        last.args("ENTRYPOINT").collect::<Vec<_>>(),
        ["[\"/tailprobe\"]"]
    );
    // A musl toolchain for the static binary, and what build.rs needs for
    // the BPF program, required rather than hoped for.
    assert!(build.image().ends_with("-alpine"), "{}", build.image());
    let apk = build
        .args("RUN")
        .find(|r| r.starts_with("apk add"))
        .expect("the build stage installs packages");
    for package in ["musl-dev", "clang", "llvm", "libbpf-dev"] {
        assert!(
            apk.split_whitespace().any(|w| w == package),
            "{package}: {apk}"
        );
    }
    assert!(
        build.args("RUN").any(|r| r.starts_with(
            "TAILPROBE_REQUIRE_BPF=1 cargo build --release --locked --bin tailprobe "
        )),
        "the build stage builds the release binary, passive mode required"
    );
}

#[test]
fn the_build_stage_copies_build_passive_mode_and_a_new_clang_is_picked_up() {
    let started = Instant::now();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let real_clang = std::env::var_os("CLANG")
        .map(PathBuf::from)
        .or_else(|| on_path("clang"))
        .expect("clang is needed to build passive mode: apt-get install clang libbpf-dev llvm");
    let stages = stages(DOCKERFILE);
    let (_, build_stage) = final_and_build(&stages);
    let copies = copies(build_stage).unwrap_or_else(|e| panic!("Dockerfile: {e}"));
    let ignored = ignored();

    let scratch = Scratch::new();
    let context = scratch.0.join("src");
    std::fs::create_dir_all(&context).unwrap();
    for c in &copies {
        for source in &c.sources {
            // `.` and `./x` name the context and x in it.
            let from: PathBuf = Path::new(source)
                .components()
                .filter(|part| *part != std::path::Component::CurDir)
                .collect();
            let to = match (c.dest_is_dir, repo.join(&from).is_dir()) {
                (true, false) => context.join(&c.dest).join(from.file_name().unwrap()),
                _ => context.join(&c.dest),
            };
            copy_tree(repo, &from, &to, &ignored);
        }
    }
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-test");
    let clang = scratch.0.join("clang");

    // clang missing: required, the build stops; not required, the binary
    // builds and says why passive mode is unavailable.
    write_script(&clang, "echo \"$0: clang: not found\" >&2\nexit 127");
    let refused = cargo_build(&context, &target_dir, &clang, true);
    assert!(!refused.ok, "built without clang though required");
    assert!(
        refused
            .stderr
            .contains("passive mode unavailable, and TAILPROBE_REQUIRE_BPF is set: cannot run"),
        "{}",
        refused.stderr
    );
    let without = cargo_build(&context, &target_dir, &clang, false);
    assert!(without.ok, "{}", without.stderr);
    assert!(
        without
            .stderr
            .contains("passive mode unavailable: cannot run"),
        "{}",
        without.stderr
    );
    assert_eq!(without.object_len(), 0);
    let warning = without.check_warning(&scratch.0);
    assert!(
        warning.contains("built without its BPF program: cannot run")
            && warning.contains("clang: not found"),
        "{warning}"
    );

    // clang works now, as after `apt-get install clang`: same path, same
    // environment, no source touched. The next build has passive mode.
    write_script(&clang, &format!("exec '{}' \"$@\"", real_clang.display()));
    let with = cargo_build(&context, &target_dir, &clang, false);
    assert!(with.ok, "{}", with.stderr);
    assert!(
        !with.stderr.contains("passive mode unavailable"),
        "{}",
        with.stderr
    );
    assert!(with.object_len() > 0, "passive.bpf.o is empty");
    let warning = with.check_warning(&scratch.0);
    assert!(
        !warning.contains("built without its BPF program"),
        "{warning}"
    );

    // Built: nothing changed, so nothing reruns.
    let again = cargo_build(&context, &target_dir, &clang, false);
    assert!(again.ok, "{}", again.stderr);
    assert!(again.binary_fresh, "rebuilt with no input changed");
    eprintln!("image test: {:.1?}", started.elapsed());
}
