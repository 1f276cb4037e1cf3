//! The core makes no system call and reads no clock: everything it knows
//! comes in as an input, everything it does goes out as an action. This
//! checks its folder for the ways it could reach the system anyway.

use std::path::Path;

/// What the core must not name: the system-call crates and modules, the
/// clocks, threads and channels, and the shell's own modules.
const FORBIDDEN: &[&str] = &[
    "nix::",
    "libc::",
    "std::fs",
    "std::process",
    "std::net",
    "std::thread",
    "std::env",
    "Instant::now",
    "SystemTime::now",
    "fastrand::u",
    "fastrand::f",
    "fastrand::bool",
    "crossbeam",
    "signal_hook",
    "crate::engine",
    "crate::transport",
    "crate::poller",
    "crate::pipes",
    "crate::spawn",
    "crate::thread",
    "crate::output",
    "crate::feeder",
    "crate::remote",
    "crate::safedir",
    "crate::event",
    "crate::escaped",
];

#[test]
fn the_core_makes_no_system_call_and_reads_no_clock() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut checked = 0;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/core") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        // Unit tests may use the real clock to make their inputs.
        let product = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        for (n, line) in product.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in FORBIDDEN {
                if code.contains(f) {
                    found.push(format!("{}:{}: {f}: {line}", path.display(), n + 1));
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} files in {}", dir.display());
    assert!(
        found.is_empty(),
        "the core reaches the system:\n{}",
        found.join("\n")
    );
}
