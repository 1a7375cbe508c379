//! `wharf-shim`: the per-instance shim as its own small binary (no CLI parser, no async
//! runtime), so each supervised instance costs as little memory as possible. `wharf __shim`
//! does the same when this binary is not installed beside `wharf`.

fn main() {
    std::process::exit(wharf_runtime::shim::run());
}
