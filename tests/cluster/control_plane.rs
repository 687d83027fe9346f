//! `scripts/control-plane`, the build of the lab's real Kubernetes: what it
//! says when Go is missing or a module cannot be had, and that it never
//! leaves a half-built folder to be taken for a built one.

use std::process::Command;

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane")
}

#[test]
fn without_go_the_build_says_what_to_install() {
    let out = Command::new(script())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the Go toolchain is not installed; install Go"),
        "{err}"
    );
}

#[test]
fn a_module_that_cannot_be_had_fails_the_build_and_leaves_no_folder() {
    if Command::new("go").arg("version").output().is_err() {
        panic!("go is not installed; the test command needs it to build the control plane");
    }
    let tmp = std::env::temp_dir().join(format!("tailprobe-cp-{}", std::process::id()));
    let cache = tmp.join("cache");
    let out = Command::new(script())
        // An empty module cache and no proxy: nothing can be downloaded.
        .env("TAILPROBE_CACHE", &cache)
        .env("GOMODCACHE", tmp.join("mod"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let leftovers: Vec<_> = std::fs::read_dir(cache.join("kubernetes"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // The build's log stays, for the reader; no version folder may.
        .filter(|n| n != "build.log")
        .collect();
    // Go's read-only module cache: make it writable to remove it.
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(&tmp).status();
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("GOPROXY=off"),
        "go names the module it could not get: {err}"
    );
    assert!(err.contains("building kubernetes"), "{err}");
    assert!(
        leftovers.is_empty(),
        "a half-built folder was left: {leftovers:?}"
    );
}
