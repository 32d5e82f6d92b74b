//! Runs first in `.ci/test` (and with every `cargo test`): one line per outside tool that does
//! not work on this machine, with the Debian package that provides it. The same check guards
//! every harness entry point, so a test never fails deep inside for want of a tool.

mod common;

#[test]
fn every_outside_tool_works() {
    let problems = common::preflight::problems();
    assert!(
        problems.is_empty(),
        "run `sudo bash .ci/setup`; broken tools:\n{}",
        problems.join("\n")
    );
}
