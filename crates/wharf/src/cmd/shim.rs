//! `wharf __shim` (hidden): the per-instance shim process; see `wharf_runtime::shim`.

use crate::exit::ExitStatus;

pub fn run() -> anyhow::Result<ExitStatus> {
    let code = wharf_runtime::shim::run();
    std::process::exit(code);
}
