//! Process limits the server sets for itself at start: open files and the file-creation mask.

/// Raises the soft open-files limit to the hard limit (a hub holds one descriptor per
/// subscriber; distributions default the soft limit to 1,024) and logs both. Returns the soft
/// limit in force afterwards, `None` if it cannot be read.
pub fn raise_open_files() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(err) => {
            tracing::warn!(%err, "cannot read the open-files limit");
            return None;
        }
    };
    if soft >= hard {
        tracing::info!(soft, hard, "open-files limit");
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(was = soft, soft = hard, hard, "open-files limit raised");
            Some(hard)
        }
        Err(err) => {
            tracing::warn!(%err, soft, hard, "cannot raise the open-files limit");
            Some(soft)
        }
    }
}

/// Files and directories the hub creates are readable by its own user only (the history
/// holds private notifications).
pub fn private_umask() {
    use nix::sys::stat::{umask, Mode};
    let _ = umask(Mode::from_bits_truncate(0o077));
}
