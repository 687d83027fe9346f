//! Where the control plane's programs are: built by `scripts/control-plane`
//! from the Go modules pinned in `tools/`, into a cache keyed by version.
//! The pins are read from the wrapper modules themselves, compiled in, so
//! this binary asks for exactly the release the tree pins.

use std::path::{Path, PathBuf};

use crate::lab::LabError;

const KUBERNETES_GO_MOD: &str = include_str!("../../../tools/kubernetes/go.mod");
const ETCD_GO_MOD: &str = include_str!("../../../tools/etcd/go.mod");

/// The pinned `k8s.io/kubernetes` release, such as `v1.37.2`.
pub fn kubernetes_version() -> &'static str {
    pinned(KUBERNETES_GO_MOD, "k8s.io/kubernetes")
        .expect("tools/kubernetes/go.mod requires k8s.io/kubernetes")
}

/// The pinned etcd server release, such as `v3.6.16`.
pub fn etcd_version() -> &'static str {
    pinned(ETCD_GO_MOD, "go.etcd.io/etcd/server/v3")
        .expect("tools/etcd/go.mod requires go.etcd.io/etcd/server/v3")
}

/// A module's pinned version in a wrapper module's go.mod: a `require M v`
/// line, or `M v` inside a require block.
pub fn pinned(go_mod: &'static str, module: &str) -> Option<&'static str> {
    go_mod.lines().find_map(|l| {
        let l = l.trim();
        let mut w = l.strip_prefix("require ").unwrap_or(l).split_whitespace();
        (w.next() == Some(module)).then(|| w.next()).flatten()
    })
}

/// The programs of one control plane.
#[derive(Debug, Clone)]
pub struct Bins {
    pub kubernetes: PathBuf,
    pub etcd: PathBuf,
}

impl Bins {
    pub fn apiserver(&self) -> PathBuf {
        self.kubernetes.join("kube-apiserver")
    }
    pub fn controller_manager(&self) -> PathBuf {
        self.kubernetes.join("kube-controller-manager")
    }
    pub fn scheduler(&self) -> PathBuf {
        self.kubernetes.join("kube-scheduler")
    }
    pub fn proxy(&self) -> PathBuf {
        self.kubernetes.join("kube-proxy")
    }
    pub fn kubectl(&self) -> PathBuf {
        self.kubernetes.join("kubectl")
    }
    pub fn etcd(&self) -> PathBuf {
        self.etcd.join("etcd")
    }

    /// The cache `scripts/control-plane` builds into: `TAILPROBE_CACHE`,
    /// else `$XDG_CACHE_HOME/tailprobe`, else `~/.cache/tailprobe`.
    pub fn cache_dir() -> PathBuf {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        var("TAILPROBE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                var("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))
                    .unwrap_or_else(|| PathBuf::from("/root/.cache"))
                    .join("tailprobe")
            })
    }

    /// The pinned release in `dir` (a cache as `scripts/control-plane`
    /// lays it out), or an error that says how to build it.
    pub fn find(dir: Option<&Path>) -> Result<Self, LabError> {
        let cache = dir.map(Path::to_path_buf).unwrap_or_else(Self::cache_dir);
        let bins = Self {
            kubernetes: cache.join("kubernetes").join(kubernetes_version()),
            etcd: cache.join("etcd").join(etcd_version()),
        };
        let wanted = [
            bins.apiserver(),
            bins.controller_manager(),
            bins.scheduler(),
            bins.proxy(),
            bins.kubectl(),
            bins.etcd(),
        ];
        if let Some(missing) = wanted.iter().find(|p| !p.is_file()) {
            return Err(LabError::Usage(format!(
                "the control plane is not built: {} is missing; run scripts/control-plane \
                 (it builds Kubernetes {} and etcd {} from the Go modules pinned in tools/, \
                 about 8 minutes on 2 cores the first time) or pass --kube-bin with the cache it printed",
                missing.display(),
                kubernetes_version(),
                etcd_version()
            )));
        }
        Ok(bins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pins_are_read_from_the_wrapper_modules() {
        assert!(
            kubernetes_version().starts_with("v1."),
            "{}",
            kubernetes_version()
        );
        assert!(
            !kubernetes_version().contains(' '),
            "{}",
            kubernetes_version()
        );
        assert!(etcd_version().starts_with("v3."), "{}", etcd_version());
        let e = Bins::find(Some(Path::new("/nonexistent-tailprobe-cache"))).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("scripts/control-plane"), "{text}");
        assert!(text.contains(kubernetes_version()), "{text}");
    }
}
