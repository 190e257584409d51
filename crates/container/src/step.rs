//! [`StepError`]: the error of a setup step that runs in a forked child (init, the first stage,
//! an exec child) or in a helper those call. It names the step and keeps the OS error as its
//! source; it crosses to the runtime as the text of `Msg::Error`, which becomes the CLI's
//! message, so its text is what the user reads.

use std::path::Path;

/// A setup step that failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// {what}: {source}
    #[error("{what}: {source}")]
    Os {
        /// The step, with the path or value it worked on.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// mounts[{index}] ({dest}): {source}
    #[error("mounts[{index}] ({dest}): {source}")]
    Mount {
        /// The index in `mounts`.
        index: usize,
        /// Its destination.
        dest: String,
        /// What failed.
        source: Box<StepError>,
    },
    /// An OS error reported as is (its text alone, as before).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A hook run by the step (createContainer).
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// A rule the step checks (a path outside the root, an unknown policy, an unmapped id…),
    /// or a failure reported by another step as text.
    #[error("{0}")]
    Msg(String),
}

impl From<String> for StepError {
    fn from(s: String) -> Self {
        StepError::Msg(s)
    }
}

impl From<&str> for StepError {
    fn from(s: &str) -> Self {
        StepError::Msg(s.to_string())
    }
}

/// The result of a setup step.
pub type StepResult<T> = Result<T, StepError>;

/// Maps an OS error to [`StepError::Os`] naming `what`.
pub fn os(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StepError {
    let what = what.into();
    move |source| StepError::Os { what, source }
}

/// `{step} {path}` as the step of an OS error, the shape the rootfs steps use.
pub fn at(step: &str, p: &Path) -> impl FnOnce(std::io::Error) -> StepError {
    os(format!("{step} {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn os_errors_keep_their_source_and_the_message_shape() {
        let e = at("mkdir", Path::new("/x"))(std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.to_string(), "mkdir /x: Permission denied (os error 13)");
        let src = e.source().expect("source kept");
        assert_eq!(
            src.downcast_ref::<std::io::Error>()
                .and_then(|e| e.raw_os_error()),
            Some(libc::EACCES)
        );
        let m: StepError = format!("cwd {} is outside the container root", "/a").into();
        assert_eq!(m.to_string(), "cwd /a is outside the container root");
        assert!(m.source().is_none());
    }
}
