//! Open files: every probe in flight holds a socket. The process raises its
//! soft limit to the hard one at start, and refuses a configuration whose
//! in-flight bound plus the servers' and clients' own sockets cannot fit, so
//! an incident that strands thousands of probes in SYN_SENT cannot starve
//! `/healthz` of a descriptor and get the prober restarted mid-incident.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors kept for everything but probes: the API's and the echo's
/// connection limits, the OTLP and Kubernetes clients, logs, listeners.
pub const HEADROOM: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    #[error(
        "{in_flight} probes in flight plus {HEADROOM} descriptors of headroom need {need} open files, but the hard limit is {hard}; lower [probe] max_in_flight (or [matrix] concurrency) to at most {fits}, or raise the limit (ulimit -Hn, LimitNOFILE, or the container runtime's nofile)"
    )]
    TooFew {
        in_flight: u64,
        need: u64,
        hard: u64,
        fits: u64,
    },
    #[error("cannot read or raise the open-files limit ({0})")]
    Rlimit(#[from] nix::Error),
}

/// Raises the soft open-files limit to the hard one and checks that
/// `in_flight` probes fit with the headroom. Returns the soft limit now in
/// force.
pub fn raise_open_files(in_flight: usize) -> Result<u64, FdLimitError> {
    let limit = raise()?;
    check(in_flight as u64, limit)?;
    Ok(limit)
}

/// The soft limit raised to the hard one.
fn raise() -> Result<u64, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

fn check(in_flight: u64, limit: u64) -> Result<(), FdLimitError> {
    let need = in_flight.saturating_add(HEADROOM);
    if need > limit {
        return Err(FdLimitError::TooFew {
            in_flight,
            need,
            hard: limit,
            fits: limit.saturating_sub(HEADROOM),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cannot_fit_and_says_what_would() {
        assert!(check(4096, 1 << 20).is_ok());
        let e = check(4096, 1024).unwrap_err().to_string();
        assert!(e.contains("hard limit is 1024"), "{e}");
        assert!(e.contains("at most 0"), "{e}");
        let e = check(4096, 4096).unwrap_err().to_string();
        assert!(e.contains("at most 3072"), "{e}");
    }

    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(raise().unwrap(), hard);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap().0, hard);
    }
}
