//! docs/lifecycle.md against the code, so that the next drift fails CI.
//!
//! The document's tables marked `<!-- checked: KEY -->` (or `<!-- checked:
//! KEY, column N -->`) name one thing per row, the first word in backticks
//! in their first (or N-th) column: run phases, worker phases, status-table states, what falls due
//! at a deadline, attempt outcomes, error kinds and restart reasons. Every
//! name in such a column must exist in the code, and every name the code
//! has must be in the column. The code's lists ([`Outcome::ALL`] and the
//! like) are in turn checked against the enum declarations in the source,
//! so that a new variant cannot be left out of them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use callpool_protocol::ErrorKind;

use crate::core::worker::{Due, Phase, Retire, State};
use crate::files::output::Outcome;

fn lifecycle_md() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/lifecycle.md");
    std::fs::read_to_string(&path).expect("docs/lifecycle.md is readable")
}

/// The first name in backticks in the checked column of each row of the
/// table that follows the `<!-- checked: KEY ... -->` line, without what
/// follows a `(` or a `{` (`Retiring(why)` is `Retiring`).
fn doc_names(doc: &str, key: &str) -> BTreeSet<String> {
    let marker = format!("<!-- checked: {key}");
    let lines: Vec<&str> = doc.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.strip_prefix(&marker)
                .is_some_and(|rest| rest.starts_with([' ', ',']))
        })
        .unwrap_or_else(|| panic!("docs/lifecycle.md has no `{marker} -->` line before its table"));
    let column = lines[at]
        .split("column ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map_or(1, |n| n.parse::<usize>().expect("a column number"));
    let mut names = BTreeSet::new();
    let rows = lines[at + 1..]
        .iter()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        // The header row and the |---| row.
        .skip(2);
    for row in rows {
        let cell = row
            .trim()
            .trim_matches('|')
            .split('|')
            .nth(column - 1)
            .unwrap_or_else(|| {
                panic!("docs/lifecycle.md, table {key}: no column {column} in {row}")
            });
        if let Some(span) = cell.split('`').nth(1) {
            let name = span.split(['(', '{']).next().unwrap_or(span).trim();
            names.insert(name.to_string());
        }
    }
    assert!(
        !names.is_empty(),
        "docs/lifecycle.md, table {key}: no name in backticks in column {column}"
    );
    names
}

/// Fails with both differences when the document's table and the code
/// disagree.
fn check(key: &str, code: impl IntoIterator<Item = impl Into<String>>) {
    let doc = doc_names(&lifecycle_md(), key);
    let code: BTreeSet<String> = code.into_iter().map(Into::into).collect();
    let unknown: Vec<&String> = doc.difference(&code).collect();
    let missing: Vec<&String> = code.difference(&doc).collect();
    assert!(
        unknown.is_empty() && missing.is_empty(),
        "docs/lifecycle.md, table `{key}` has drifted from the code:\n  \
         named in the table but not in the code: {unknown:?}\n  \
         in the code but not in the table: {missing:?}"
    );
}

/// The variants of the enum declared by the line `decl` in `src`, in
/// order: the lines of its body indented by one level that start with a
/// capital letter.
fn declared_variants(src: &str, decl: &str) -> Vec<String> {
    let start = src
        .lines()
        .position(|l| l.starts_with(decl))
        .unwrap_or_else(|| panic!("no line starting with {decl:?}"));
    src.lines()
        .skip(start + 1)
        .take_while(|l| *l != "}")
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|l| {
            l.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn debug_names<T: std::fmt::Debug>(all: &[T]) -> Vec<String> {
    all.iter().map(|v| format!("{v:?}")).collect()
}

#[test]
fn run_phases_match_the_document() {
    assert_eq!(
        debug_names(&crate::core::Phase::ALL),
        declared_variants(include_str!("core/mod.rs"), "pub enum Phase {"),
        "crate::core::Phase::ALL lists every phase"
    );
    check("run-phases", debug_names(&crate::core::Phase::ALL));
}

#[test]
fn core_inputs_and_actions_match_the_document() {
    check(
        "core-inputs",
        declared_variants(include_str!("core/io.rs"), "pub enum Input {"),
    );
    check(
        "core-actions",
        declared_variants(include_str!("core/io.rs"), "pub enum Action {"),
    );
}

#[test]
fn worker_phases_match_the_document() {
    assert_eq!(
        Phase::NAMES.to_vec(),
        declared_variants(include_str!("core/worker.rs"), "pub enum Phase {"),
        "Phase::NAMES lists every phase"
    );
    let t = std::time::Instant::now();
    let one_of_each = [
        Phase::Starting,
        Phase::Running,
        Phase::Retiring(Retire::Fewer),
        Phase::Closing {
            at: t,
            retired: None,
        },
        Phase::Killing {
            reason: crate::core::worker::KillReason::Timeout,
            at: t,
            sigkilled: false,
        },
    ];
    let names: Vec<&str> = one_of_each.iter().map(Phase::name).collect();
    assert_eq!(names, Phase::NAMES);
    check("worker-phases", Phase::NAMES);
}

#[test]
fn status_table_states_match_the_document() {
    assert_eq!(
        debug_names(&State::ALL),
        declared_variants(include_str!("core/worker.rs"), "pub enum State {"),
        "State::ALL lists every state"
    );
    check("states", State::ALL.map(State::name));
}

#[test]
fn deadlines_match_the_document() {
    assert_eq!(
        debug_names(&Due::ALL),
        declared_variants(include_str!("core/worker.rs"), "pub enum Due {"),
        "Due::ALL lists everything that can fall due"
    );
    check("due", debug_names(&Due::ALL));
}

#[test]
fn attempt_outcomes_match_the_document() {
    assert_eq!(
        debug_names(&Outcome::ALL),
        declared_variants(include_str!("records.rs"), "pub enum Outcome {"),
        "Outcome::ALL lists every outcome"
    );
    check("outcomes", Outcome::ALL.map(Outcome::as_str));
}

#[test]
fn error_kinds_match_the_document() {
    // ErrorKind::ALL is checked against its declaration in kind.rs.
    let mut kinds: Vec<String> = ErrorKind::ALL.iter().map(|k| k.as_str().into()).collect();
    kinds.push(ErrorKind::other().as_str().into());
    check("error-kinds", kinds);
}

#[test]
fn restart_reasons_match_the_document() {
    assert_eq!(
        debug_names(&Retire::ALL),
        declared_variants(include_str!("core/worker.rs"), "pub enum Retire {"),
        "Retire::ALL lists every reason to retire"
    );
    let reasons = crate::core::RESTART_REASONS
        .into_iter()
        .chain(Retire::ALL.map(Retire::reason));
    check("restart-reasons", reasons);
}

#[test]
fn the_table_reader_reads_the_checked_column() {
    let doc = "x\n<!-- checked: things, column 2 -->\n| a | b |\n|---|---|\n| `no` | `One(x)`: not `this` |\n| - | then `Two { y }` |\n| - | `three` |\n\nafter `four`\n";
    let names: Vec<String> = doc_names(doc, "things").into_iter().collect();
    assert_eq!(names, ["One", "Two", "three"]);
    let src = "pub enum E {\n    /// A.\n    A,\n    B(u8),\n    C {\n        x: u8,\n    },\n}\n";
    assert_eq!(declared_variants(src, "pub enum E {"), ["A", "B", "C"]);
}
