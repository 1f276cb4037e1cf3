//! End-to-end tests of spreadsheets as Excel saves them in Western Europe:
//! semicolons, Windows-1252, an empty column at the end of the header
//! line; and an export that opens right in the same Excel. The real
//! supervisor against the demo API, on real files.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::{Command, Stdio};

/// The rows as a German or Spanish Excel writes them with "CSV (delimited
/// by semicolons)": a `;` after the last column of every line, CRLF.
const ROWS: &[[&str; 4]] = &[
    ["k1", "José Müller", "Calle Mayor 5, 2º", "Madrid"],
    [
        "k2",
        "Françoise Dœuf",
        "10 Rue de l'Église, Bât. B",
        "Paris",
    ],
    ["k3", "Ødegård", "Karl Johans gate 1", "Oslo – 5 €"],
];

/// `text` in Windows-1252 (only the characters these tests use).
fn cp1252(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            '€' => 0x80,
            '–' => 0x96,
            'œ' => 0x9c,
            c if (c as u32) < 0x80 || (0xa0..0x100).contains(&(c as u32)) => c as u8,
            c => panic!("{c:?} is not in this test's Windows-1252"),
        })
        .collect()
}

/// The Excel file: header `Kundennr;Name;Adresse;Stadt;`, then `ROWS`.
fn excel_csv(extra: &str) -> Vec<u8> {
    let mut text = String::from("Kundennr;Name;Adresse;Stadt;\r\n");
    for row in ROWS {
        text.push_str(&row.join(";"));
        text.push_str(";\r\n");
    }
    text.push_str(extra);
    cp1252(&text)
}

fn run(s: &Scratch, url: &str, extra: &[&str]) -> (Option<i32>, String) {
    run_supervisor(
        s.supervisor()
            .args(["--workers", "2", "--retries", "0", "--url", url])
            .args(["--id-column", "Kundennr"])
            .args(extra)
            .arg("kunden.csv"),
    )
}

#[test]
fn a_semicolon_windows_1252_file_runs_with_every_value_decoded() {
    let api = DemoApi::start();
    let s = Scratch::new();
    std::fs::write(s.path("kunden.csv"), excel_csv("")).unwrap();
    // No --delimiter: the header line says `;`.
    let (code, stderr) = run(&s, &api.geocode(), &["--encoding", "windows-1252"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids(), ["k1", "k2", "k3"]);
    for [id, name, address, city] in ROWS {
        let result = s.result(id);
        let echo = &result["response"]["body"]["echo"];
        assert_eq!(echo["Name"], *name, "{result}");
        assert_eq!(echo["Adresse"], *address, "{result}");
        assert_eq!(echo["Stadt"], *city, "{result}");
        // The ignored empty column is not sent, and the id is not either.
        let sent: Vec<&String> = echo.as_object().unwrap().keys().collect();
        assert_eq!(sent, ["Name", "Adresse", "Stadt"], "{result}");
    }
}

#[test]
fn without_its_encoding_the_file_is_refused_at_its_line_with_the_fix() {
    let s = Scratch::new();
    std::fs::write(s.path("kunden.csv"), excel_csv("")).unwrap();
    let (code, stderr) = run(&s, "http://127.0.0.1:9/geo", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!s.results().exists(), "nothing is written: {stderr}");
    assert!(
        stderr.contains(
            "kunden.csv:2: column \"Name\" is not valid UTF-8; if the file is in another encoding, say which"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("kunden.csv:3: column \"Name\""), "{stderr}");
    // The fix is said once, not on every line.
    assert_eq!(
        stderr.matches("give --encoding windows-1252").count(),
        1,
        "{stderr}"
    );
    // Nothing blames the comma inside an address, or the delimiter.
    assert!(!stderr.contains("fields"), "{stderr}");
}

#[test]
fn a_wrong_delimiter_is_named_with_the_right_one() {
    let s = Scratch::new();
    std::fs::write(s.path("kunden.csv"), excel_csv("")).unwrap();
    let url = "http://127.0.0.1:9/geo";
    // Told a comma: the header would be one column, each row one value
    // (and the comma inside an address would make a row ragged): the
    // header line is named, with the delimiter it uses.
    let (code, stderr) = run(&s, url, &["--encoding", "cp1252", "--delimiter", ","]);
    assert_eq!(code, Some(2), "{stderr}");
    let one_column = "the header has one column, \"Kundennr;Name;Adresse;Stadt;\"; the header line looks separated by ';' rather than ',': give --delimiter ';'";
    assert!(
        stderr.contains(&format!("kunden.csv:1: {one_column}")),
        "{stderr}"
    );
    assert!(!stderr.contains("fields"), "{stderr}");
    // The same file named .tsv is not run as one column of whole lines.
    std::fs::copy(s.path("kunden.csv"), s.path("kunden.tsv")).unwrap();
    let (code, stderr) = run_supervisor(
        s.supervisor()
            .args(["--url", url, "--encoding", "latin1"])
            .arg("kunden.tsv"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("kunden.tsv:1: the header has one column, \"Kundennr;Name;Adresse;Stadt;\"; the header line looks separated by ';' rather than tab: give --delimiter ';'"),
        "{stderr}"
    );
    // A header of several columns read with the wrong delimiter: a row
    // that does not fit says that the delimiter is the likely cause.
    let mut file = b"Kundennr,PLZ;Name;Stadt\r\n".to_vec();
    file.extend(cp1252("k1,28013;José;Madrid, Centro\r\n"));
    std::fs::write(s.path("kunden.csv"), file).unwrap();
    let (code, stderr) = run(
        &s,
        url,
        &["--encoding", "windows-1252", "--delimiter", "comma"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("kunden.csv:2: the row has 3 fields, the header has 2; the header line looks separated by ';' rather than ',': give --delimiter ';'"),
        "{stderr}"
    );
    assert!(!s.results().exists(), "nothing is written: {stderr}");
    // A name that is no delimiter is refused by the option itself.
    let (code, stderr) = run(&s, url, &["--delimiter", "colon"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("comma, semicolon, tab, pipe"), "{stderr}");
}

#[test]
fn a_value_in_the_unnamed_last_column_is_refused_by_position() {
    let s = Scratch::new();
    std::fs::write(
        s.path("kunden.csv"),
        excel_csv("k4;Ana;Rua 1;Porto;oops\r\n"),
    )
    .unwrap();
    let (code, stderr) = run(
        &s,
        "http://127.0.0.1:9/geo",
        &["--encoding", "windows-1252"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("kunden.csv:5: column 5 has no name in the header"),
        "{stderr}"
    );
    assert!(stderr.contains("\"oops\""), "{stderr}");
    assert!(stderr.contains("1 bad line in the jobs file"), "{stderr}");
}

#[test]
fn export_writes_a_bom_and_semicolons_row_for_row() {
    let api = DemoApi::start();
    let s = Scratch::new();
    std::fs::write(s.path("kunden.csv"), excel_csv("")).unwrap();
    let url = api.geocode();
    let (code, stderr) = run(&s, &url, &["--encoding", "windows-1252"]);
    assert_eq!(code, Some(0), "{stderr}");
    let export = |extra: &[&str], output: &str| {
        let (code, stderr) = run_supervisor(
            Command::new(SUPERVISOR)
                .current_dir(s.dir.path())
                .stdin(Stdio::null())
                .args(["export", "results", "--jobs", "kunden.csv"])
                .args(["--encoding", "windows-1252", "--id-column", "Kundennr"])
                .args(["--url", &url, "--field", "api=/status", "--output", output])
                .args(extra),
        );
        assert_eq!(code, Some(0), "{stderr}");
        std::fs::read(s.path(output)).unwrap()
    };
    let bytes = export(&["--delimiter", ";", "--bom"], "out.csv");
    let text = std::str::from_utf8(&bytes).expect("the table is UTF-8");
    let text = text
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark first");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "Kundennr;Name;Adresse;Stadt;api;ok;attempts;http_status;error_kind;error;dedup_of;status"
    );
    assert_eq!(lines.len(), 1 + ROWS.len(), "{text}");
    for (line, [id, name, address, city]) in lines[1..].iter().zip(ROWS) {
        // A comma needs no quotes between semicolons.
        assert!(
            line.starts_with(&format!("{id};{name};{address};{city};")),
            "{line}"
        );
        assert!(line.ends_with(";true;1;200;;;;ok"), "{line}");
    }
    // Without --delimiter, a CSV table follows the jobs file's; without
    // --bom, it has none.
    let plain = export(&[], "plain.csv");
    assert!(plain.starts_with(b"Kundennr;Name;"), "{plain:?}");
    assert_eq!(plain, text.as_bytes(), "the same table, less the mark");
    // And the table can be told a comma, for a spreadsheet that wants one.
    let comma = export(&["--output-delimiter", "comma", "--bom"], "comma.csv");
    let comma = String::from_utf8(comma).unwrap();
    assert!(
        comma.starts_with("\u{feff}Kundennr,Name,Adresse,Stadt,api,"),
        "{comma}"
    );
}
