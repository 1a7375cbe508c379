//! Exit codes, one meaning each, documented in `wharf --help`.

use std::process::ExitCode;

/// What a command's outcome means to a script calling wharf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything checked out.
    Ok,
    /// 1: the thing that was checked failed (a verification, a preflight, a probe).
    Failed,
    /// 2: the input was invalid (a broken manifest, a wrong flag, a corrupt file).
    Invalid,
}

/// The status when stdout or stderr is a pipe whose reader went away (`wharf status | head
/// -1`): 128 + SIGPIPE, what a shell reports for `cat` or `grep` in the same place. wharf
/// stops quietly rather than panic on the write that failed.
pub const BROKEN_PIPE: u8 = 141;

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(match status {
            ExitStatus::Ok => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Invalid => 2,
        })
    }
}
