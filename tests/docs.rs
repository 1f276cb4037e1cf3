//! The documents match the code: every log line quoted in a `log` block of
//! docs/protocol.md and docs/formats.md can be printed by the code under
//! crates/ and bin/, and the Python worker of docs/protocol.md §7 runs, as
//! it is written there.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// The documents whose `log` blocks are checked.
const DOCS: [&str; 2] = ["docs/protocol.md", "docs/formats.md"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of every fenced block tagged `log` (indented or not), without
/// comments (`#`) and blank lines.
fn log_lines(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_log = false;
    for line in doc.lines() {
        let t = line.trim();
        if let Some(tag) = t.strip_prefix("```") {
            in_log = !in_log && tag.trim() == "log";
            continue;
        }
        if in_log && !t.is_empty() && !t.starts_with('#') {
            out.push(t.to_string());
        }
    }
    out
}

/// The text of a document line between its placeholders: `{name}` is a
/// value, `"{name}"` a quoted one (as Rust's `{:?}` prints a string).
fn fragments(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut rest = line;
    while !rest.is_empty() {
        let quoted = rest.starts_with("\"{");
        let open = if quoted { 1 } else { 0 };
        if rest[open..].starts_with('{')
            && let Some(close) = rest[open..].find('}')
        {
            let mut end = open + close + 1;
            if quoted {
                if rest[end..].starts_with('"') {
                    end += 1;
                } else {
                    // Not a quoted placeholder: the quote is text.
                    out.last_mut().unwrap().push('"');
                    rest = &rest[1..];
                    continue;
                }
            }
            out.push(String::new());
            rest = &rest[end..];
            continue;
        }
        let c = rest.chars().next().unwrap();
        out.last_mut().unwrap().push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into_iter().filter(|f| !f.is_empty()).collect()
}

/// Every string literal of a Rust source file, escapes resolved. Comments
/// and character literals are skipped.
fn string_literals(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                // A character literal, or a lifetime.
                if b.get(i + 1) == Some(&b'\\') {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                    i += 1;
                } else if let Some(c) = src[i + 1..].chars().next()
                    && src[i + 1 + c.len_utf8()..].starts_with('\'')
                {
                    i += 2 + c.len_utf8();
                } else {
                    i += 1;
                }
            }
            b'r' if (i == 0 || !ident(b[i - 1]) || b[i - 1] == b'b')
                && matches!(b.get(i + 1), Some(b'"' | b'#')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                let start = i + 1 + hashes;
                if b.get(start) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let end_mark = format!("\"{}", "#".repeat(hashes));
                let body = &src[start + 1..];
                let len = body.find(&end_mark).unwrap_or(body.len());
                out.push(body[..len].to_string());
                i = start + 1 + len + end_mark.len();
            }
            b'"' => {
                let mut s = String::new();
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                        match b.get(i) {
                            Some(b'n') => s.push('\n'),
                            Some(b't') => s.push('\t'),
                            Some(b'r') => s.push('\r'),
                            Some(b'0') => s.push('\0'),
                            Some(b'x') => {
                                let v = u8::from_str_radix(&src[i + 1..i + 3], 16).unwrap_or(b'?');
                                s.push(char::from(v));
                                i += 2;
                            }
                            Some(b'u') => {
                                let close = src[i..].find('}').unwrap_or(0);
                                let hex = &src[i + 2..i + close];
                                s.push(
                                    u32::from_str_radix(hex, 16)
                                        .ok()
                                        .and_then(char::from_u32)
                                        .unwrap_or('?'),
                                );
                                i += close;
                            }
                            Some(b'\n') => {
                                while i + 1 < b.len() && b[i + 1].is_ascii_whitespace() {
                                    i += 1;
                                }
                            }
                            Some(&c) => s.push(char::from(c)),
                            None => {}
                        }
                        i += 1;
                    } else {
                        let c = src[i..].chars().next().unwrap();
                        s.push(c);
                        i += c.len_utf8();
                    }
                }
                out.push(s);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// A literal cut into the lines it prints, each cut at its format
/// placeholders (`{...}`; `{{` and `}}` are braces): a template, whose
/// consecutive pieces have a placeholder between them.
fn templates(literal: &str) -> Vec<Vec<String>> {
    let mut out = vec![vec![String::new()]];
    let mut chars = literal.chars().peekable();
    while let Some(c) = chars.next() {
        let t = out.last_mut().unwrap();
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                t.last_mut().unwrap().push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                t.last_mut().unwrap().push('}');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                t.push(String::new());
            }
            '\n' => out.push(vec![String::new()]),
            c => t.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Where a match stands in a document fragment: at `pos`, inside the
/// templates of `stack` (the innermost last), each just after its piece of
/// the given index, with a placeholder to fill; an empty stack is after
/// the end of a template whose surroundings are not known.
#[derive(Clone, PartialEq, Eq, Hash)]
struct At {
    pos: usize,
    stack: Vec<(usize, usize)>,
}

/// The templates of every string literal under crates/ and bin/.
struct Source {
    templates: Vec<Vec<String>>,
    /// Every piece, each between NULs, to look for text quickly.
    hay: String,
    /// Template and piece index of each piece, by its text.
    by_text: HashMap<String, Vec<(usize, usize)>>,
    /// Literals without placeholders, of a word or more: what code puts in
    /// a placeholder of another line (`"killed"`, `"it goes back to the
    /// queue"`).
    words: HashSet<String>,
}

impl Source {
    fn load() -> Self {
        fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                // Test code prints nothing a user sees (and the
                // simulator's traces would match anything).
                if p.is_dir() && !p.ends_with("tests") {
                    walk(&p, files);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(&root().join("crates"), &mut files);
        walk(&root().join("bin"), &mut files);
        let mut source = Source {
            templates: Vec::new(),
            hay: String::from("\0"),
            by_text: HashMap::new(),
            words: HashSet::new(),
        };
        for f in files {
            for lit in string_literals(&std::fs::read_to_string(f).unwrap()) {
                for t in templates(&lit) {
                    if t.len() == 1
                        && t[0].len() >= 3
                        && t[0].bytes().any(|b| b.is_ascii_alphabetic())
                    {
                        source.words.insert(t[0].clone());
                    }
                    let id = source.templates.len();
                    for (k, piece) in t.iter().enumerate() {
                        source.hay.push_str(piece);
                        source.hay.push('\0');
                        source
                            .by_text
                            .entry(piece.clone())
                            .or_default()
                            .push((id, k));
                    }
                    source.templates.push(t);
                }
            }
        }
        source
    }

    /// Piece `k` of template `t` has been matched up to `pos`, inside
    /// `outer`: the state that follows, at the placeholder after the piece,
    /// or, at the template's end, after the next piece of `outer` (none if
    /// the text is not that piece).
    fn after(
        &self,
        d: &str,
        pos: usize,
        mut outer: Vec<(usize, usize)>,
        t: usize,
        k: usize,
    ) -> Option<At> {
        if k + 1 < self.templates[t].len() {
            outer.push((t, k));
            return Some(At { pos, stack: outer });
        }
        // The template ends: the placeholder it fills in the outer one is
        // done. Outside of what is known, anything may follow.
        let Some((ot, ok)) = outer.pop() else {
            return Some(At { pos, stack: outer });
        };
        let next = &self.templates[ot][ok + 1];
        if d[pos..].starts_with(next.as_str()) {
            return self.after(d, pos + next.len(), outer, ot, ok + 1);
        }
        None
    }

    /// Whether a document fragment (the text between two placeholders of a
    /// log line, which stand for placeholders of the code) can be printed
    /// by the code: whole pieces of templates, each followed by the next
    /// piece of its template once the placeholder between them is filled,
    /// with a word (a literal without placeholders), a number, or another
    /// template. What surrounds the fragment is not known: it starts with
    /// any piece, and a template that ends there may be followed by
    /// punctuation that follows a placeholder, or by another template
    /// appended.
    fn prints(&self, d: &str) -> bool {
        let mut todo = vec![At {
            pos: 0,
            stack: Vec::new(),
        }];
        let mut seen = HashSet::new();
        while let Some(at) = todo.pop() {
            if !seen.insert(at.clone()) {
                continue;
            }
            let rest = &d[at.pos..];
            if rest.is_empty() {
                return true;
            }
            // Pieces that start here: `(template, index)` and length.
            let pieces = (1..=rest.len())
                .filter(|&len| rest.is_char_boundary(len))
                .flat_map(|len| {
                    self.by_text
                        .get(&rest[..len])
                        .into_iter()
                        .flatten()
                        .map(move |&(t, i)| (t, i, len))
                });
            let Some(&(t, k)) = at.stack.last() else {
                // After a template's end, surroundings unknown: any piece
                // at the fragment's start; later, punctuation after a
                // placeholder of the line around (spaces only at the
                // fragment's end), or a template appended.
                for (t, i, len) in pieces {
                    // Punctuation; only spaces, where the fragment ends.
                    let text = &rest.as_bytes()[..len];
                    let ok = if text.iter().any(u8::is_ascii_alphanumeric) {
                        i == 0
                    } else {
                        text.iter().any(|&b| b != b' ') || len == rest.len()
                    };
                    if at.pos == 0 || ok {
                        todo.extend(self.after(d, at.pos + len, Vec::new(), t, i));
                    }
                }
                continue;
            };
            // The placeholder after piece k of template t: filled with a
            // number, a word or nothing, then the next piece; or with
            // another template, which starts here.
            let mut outer = at.stack.clone();
            outer.pop();
            let mut fills = vec![0];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                fills.push(digits);
            }
            for len in 3..=rest.len() {
                if rest.is_char_boundary(len) && self.words.contains(&rest[..len]) {
                    fills.push(len);
                }
            }
            let next = &self.templates[t][k + 1];
            for f in fills {
                if d[at.pos + f..].starts_with(next.as_str()) {
                    todo.extend(self.after(d, at.pos + f + next.len(), outer.clone(), t, k + 1));
                }
            }
            for (m, i, len) in pieces {
                if i == 0 && self.templates[m].len() > 1 {
                    todo.push(At {
                        pos: at.pos + len,
                        stack: [at.stack.clone(), vec![(m, 0)]].concat(),
                    });
                }
            }
        }
        false
    }

    fn prints_line(&self, line: &str) -> bool {
        fragments(line).iter().all(|f| self.prints(f))
    }
}

#[test]
fn every_log_line_the_documents_quote_is_printed_by_the_code() {
    let source = Source::load();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for doc in DOCS {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for line in log_lines(&text) {
            checked += 1;
            if !source.prints_line(&line) {
                wrong.push(format!("{doc}: {line}"));
            }
        }
    }
    assert!(checked >= 30, "only {checked} log lines found");
    assert!(
        wrong.is_empty(),
        "log lines that the code does not print:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_catches_lines_that_drifted() {
    let source = Source::load();
    // Quoted as the protocol document once had them.
    for line in [
        "not a valid message: {error} in stdout line \"{line}\"",
        "supervisor: worker {slot} (pid {pid}) broke the protocol (it sent a result for job \"{id}\" while it ran job \"{id}\") and was killed",
        "supervisor: worker {slot} (pid {pid}) was stuck: job \"{id}\" has run {seconds}s",
        "the jobs file changed while it was running",
        "supervisor: worker {slot} (pid {pid}) died between jobs ({how}), starting a replacement",
        "sent `ready` two times",
    ] {
        assert!(!source.prints_line(line), "should not match: {line}");
    }
    // And lines that are right, with numbers in place of placeholders.
    for line in [
        "supervisor: worker 3 (pid 4242) broke the protocol (it speaks protocol 2, this supervisor speaks 1) and was killed; starting a replacement",
        "[worker 0 pid 17] {line}",
        "supervisor: worker {slot} (pid {pid}) broke the protocol (it stdout: line longer than 67108864 bytes) and was killed",
    ] {
        assert!(source.prints_line(line), "should match: {line}");
    }
}

/// The Python block of docs/protocol.md §7.
fn minimal_worker() -> String {
    let doc = std::fs::read_to_string(root().join("docs/protocol.md")).unwrap();
    let section = doc
        .split("\n## 7.")
        .nth(1)
        .expect("docs/protocol.md has a §7");
    let code = section
        .split("```python\n")
        .nth(1)
        .and_then(|c| c.split("\n```").next())
        .expect("§7 has a python block");
    format!("{code}\n")
}

#[test]
fn the_minimal_worker_of_the_protocol_document_runs_as_written() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let worker = s.write("mini_worker.py", &minimal_worker());
    let geocode = api.geocode();
    let base = &api.base;
    s.write(
        "jobs.jsonl",
        &format!(
            "{{\"id\":\"nyc\",\"url\":\"{geocode}\",\"params\":{{\"address\":\"100 Broadway, New York\"}}}}\n\
             {{\"id\":\"pretty\",\"url\":\"{geocode}\",\"params\":{{\"address\":\"Paris\",\"pretty\":\"1\"}}}}\n\
             {{\"id\":\"text\",\"url\":\"{base}/text\"}}\n\
             {{\"id\":\"post\",\"method\":\"POST\",\"url\":\"{base}/echo\",\"body\":{{\"n\":1}}}}\n\
             {{\"id\":\"s404\",\"url\":\"{geocode}\",\"params\":{{\"address\":\"Paris\",\"status\":\"404\"}}}}\n\
             {{\"id\":\"slow\",\"url\":\"{geocode}\",\"params\":{{\"address\":\"Paris\",\"hang\":\"1\"}},\"timeout\":\"500ms\"}}\n\
             {{\"id\":\"down\",\"url\":\"http://127.0.0.1:1/\"}}\n"
        ),
    );
    let cmd = format!("python3 {}", worker.display());
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--retries",
        "0",
        "--worker-cmd",
        &cmd,
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("broke the protocol"), "{stderr}");
    assert!(stderr.contains("\n7 jobs: 4 ok, 3 failed in "), "{stderr}");
    let nyc = s.result("nyc");
    assert_eq!(nyc["response"]["body_kind"], "json", "{nyc}");
    assert_eq!(nyc["response"]["body"]["status"], "OK", "{nyc}");
    // An answer over several lines arrives whole, as one document.
    let pretty = s.result("pretty");
    assert_eq!(pretty["response"]["body_kind"], "json", "{pretty}");
    assert_eq!(
        pretty["response"]["body"]["results"][0]["formatted_address"],
        "Paris, France"
    );
    let text = s.result("text");
    assert_eq!(text["response"]["body_kind"], "text");
    assert_eq!(text["response"]["body"], "hello from demo-api\n");
    let post = s.result("post");
    assert_eq!(post["response"]["body"]["method"], "POST");
    assert_eq!(post["response"]["body"]["body"], "{\"n\":1}");
    let s404 = s.result("s404");
    assert_eq!(s404["response"]["status"], 404, "{s404}");
    assert_eq!(s404["error"]["kind"], "http_status", "{s404}");
    assert_eq!(s.result("slow")["error"]["kind"], "timeout");
    assert_eq!(s.result("down")["error"]["kind"], "connect");
    for id in s.result_ids() {
        let r: Value = s.result(&id);
        assert_eq!(r["attempts"], 1, "{r}");
    }
}
