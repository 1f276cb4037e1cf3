//! Where the table goes (stdout, or a file written whole or not at all)
//! and how it is written (CSV, TSV or JSON Lines).

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::Value;

use super::Cell;
use crate::cli::ExportFormat;

/// Where the table's bytes go.
pub(super) enum Target {
    /// Standard output.
    Stdout(io::StdoutLock<'static>),
    /// A file, renamed into place only when the table is whole.
    File(AtomicFile),
}

impl Target {
    /// Stdout (no `--output`, or `--output -`), or a temporary file beside
    /// `--output FILE`; a FILE that cannot be written is an error now,
    /// before any work.
    pub(super) fn open(output: Option<&Path>) -> anyhow::Result<Self> {
        let path = match output {
            None => return Ok(Target::Stdout(io::stdout().lock())),
            Some(p) if p == Path::new("-") => return Ok(Target::Stdout(io::stdout().lock())),
            Some(p) => p,
        };
        if path.is_dir() || path.file_name().is_none() {
            bail!(
                "--output {} is a folder: give a file name, e.g. --output table.csv",
                path.display()
            );
        }
        let dir = folder_of(path);
        if !dir.is_dir() {
            bail!(
                "--output {}: the folder {} does not exist; create it or choose another path",
                path.display(),
                dir.display()
            );
        }
        match AtomicFile::create(path) {
            Ok(f) => Ok(Target::File(f)),
            Err(e) => bail!(
                "cannot write --output {}: {e}; choose a folder you may write to",
                path.display()
            ),
        }
    }

    /// How the closing line names it.
    pub(super) fn describe(&self) -> String {
        match self {
            Target::Stdout(_) => "stdout".to_string(),
            Target::File(f) => f.target.display().to_string(),
        }
    }

    /// Flushes, and for a file puts it in place.
    fn commit(self) -> io::Result<()> {
        match self {
            Target::Stdout(mut out) => out.flush(),
            Target::File(f) => f.commit(),
        }
    }
}

impl Write for Target {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Target::Stdout(out) => out.write(buf),
            Target::File(f) => f.file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::Stdout(out) => out.flush(),
            Target::File(f) => f.file.flush(),
        }
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A file written under no name (`O_TMPFILE`) or a temporary one, and
/// given its name only when it is whole: a reader never sees half a table,
/// an earlier table stays until the new one replaces it, and an export that
/// fails, or is killed, leaves nothing (a named temporary file is removed
/// when this is dropped uncommitted).
pub(super) struct AtomicFile {
    target: PathBuf,
    file: File,
    /// The temporary name the file has, if it has one yet.
    tmp: Option<PathBuf>,
}

impl AtomicFile {
    fn create(target: &Path) -> io::Result<Self> {
        let unnamed = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o644)
            .custom_flags(nix::fcntl::OFlag::O_TMPFILE.bits())
            .open(folder_of(target));
        if let Ok(file) = unnamed {
            return Ok(AtomicFile {
                target: target.to_path_buf(),
                file,
                tmp: None,
            });
        }
        // No O_TMPFILE on this file system: a temporary name.
        let tmp = tmp_name(target);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            file,
            tmp: Some(tmp),
        })
    }

    /// Gives the file its name: synced, linked in under a temporary name if
    /// it has none yet, then renamed over the target.
    fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        if self.tmp.is_none() {
            let tmp = tmp_name(&self.target);
            let _ = fs::remove_file(&tmp);
            let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
            let linked = nix::unistd::linkat(
                nix::fcntl::AT_FDCWD,
                proc_path.as_str(),
                nix::fcntl::AT_FDCWD,
                tmp.as_path(),
                nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
            );
            self.tmp = Some(tmp.clone());
            if linked.is_err() {
                // No /proc: copy the unnamed file to the temporary name.
                let mut copy = File::create(&tmp)?;
                self.file.seek(SeekFrom::Start(0))?;
                io::copy(&mut self.file, &mut copy)?;
                copy.sync_all()?;
            }
        }
        if let Some(tmp) = &self.tmp {
            fs::rename(tmp, &self.target)?;
        }
        self.tmp = None;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// `DIR/.NAME.tmp.PID` for `DIR/NAME`.
fn tmp_name(target: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(format!(".tmp.{}", std::process::id()));
    target.with_file_name(name)
}

/// How a CSV or TSV table is written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    /// CSV: the byte between fields (`--delimiter`).
    pub(super) delimiter: u8,
    /// A UTF-8 byte-order mark first (`--bom`), so that a spreadsheet
    /// reads the table as UTF-8.
    pub(super) bom: bool,
}

/// Writes rows in one format.
pub(super) struct Sink {
    writer: Writer,
    /// TSV values whose tabs or line breaks became spaces.
    mangled: u64,
}

enum Writer {
    /// CSV, or TSV (no quoting: tabs and line breaks are replaced).
    Table {
        out: Box<csv::Writer<Target>>,
        tsv: bool,
    },
    /// One JSON object per row; the keys JSON-encoded once.
    Jsonl {
        out: BufWriter<Target>,
        keys: Vec<String>,
    },
}

impl Sink {
    /// A table in `format` with these columns (a CSV or TSV header row is
    /// written now).
    pub(super) fn new(
        format: ExportFormat,
        style: Style,
        mut target: Target,
        header: &[String],
    ) -> io::Result<Self> {
        if style.bom && format != ExportFormat::Jsonl {
            target.write_all(b"\xef\xbb\xbf")?;
        }
        let writer = match format {
            ExportFormat::Csv => Writer::Table {
                out: Box::new(
                    csv::WriterBuilder::new()
                        .delimiter(style.delimiter)
                        .from_writer(target),
                ),
                tsv: false,
            },
            ExportFormat::Tsv => Writer::Table {
                out: Box::new(
                    csv::WriterBuilder::new()
                        .delimiter(b'\t')
                        .quote_style(csv::QuoteStyle::Never)
                        .from_writer(target),
                ),
                tsv: true,
            },
            ExportFormat::Jsonl => Writer::Jsonl {
                out: BufWriter::with_capacity(64 * 1024, target),
                keys: header
                    .iter()
                    .map(|k| Value::String(k.clone()).to_string())
                    .collect(),
            },
        };
        let mut sink = Sink { writer, mangled: 0 };
        if let Writer::Table { out, tsv } = &mut sink.writer {
            for name in header {
                out.write_field(tsv_safe(name, *tsv, &mut sink.mangled).as_bytes())
                    .map_err(csv_io)?;
            }
            out.write_record(None::<&[u8]>).map_err(csv_io)?;
        }
        Ok(sink)
    }

    /// Writes one row; `cells` match the header.
    pub(super) fn row(&mut self, cells: &[Cell]) -> io::Result<()> {
        match &mut self.writer {
            Writer::Table { out, tsv } => {
                for cell in cells {
                    let text = match cell {
                        None => Cow::Borrowed(""),
                        Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
                        Some(other) => Cow::Owned(other.to_string()),
                    };
                    out.write_field(tsv_safe(&text, *tsv, &mut self.mangled).as_bytes())
                        .map_err(csv_io)?;
                }
                out.write_record(None::<&[u8]>).map_err(csv_io)?;
            }
            Writer::Jsonl { out, keys } => {
                out.write_all(b"{")?;
                for (i, (key, cell)) in keys.iter().zip(cells).enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(key.as_bytes())?;
                    out.write_all(b":")?;
                    match cell {
                        None => out.write_all(b"null")?,
                        Some(v) => serde_json::to_writer(&mut *out, v)?,
                    }
                }
                out.write_all(b"}\n")?;
            }
        }
        Ok(())
    }

    /// Flushes and puts the table in place; returns how many TSV values
    /// lost a tab or line break.
    pub(super) fn finish(self) -> io::Result<u64> {
        let target = match self.writer {
            Writer::Table { out, .. } => (*out).into_inner().map_err(|e| e.into_error())?,
            Writer::Jsonl { out, .. } => out.into_inner().map_err(|e| e.into_error())?,
        };
        target.commit()?;
        Ok(self.mangled)
    }
}

/// For TSV, the value with its tabs and line breaks made spaces (TSV has
/// no quoting to keep them).
fn tsv_safe<'a>(text: &'a str, tsv: bool, mangled: &mut u64) -> Cow<'a, str> {
    if !tsv || !text.contains(['\t', '\n', '\r']) {
        return Cow::Borrowed(text);
    }
    *mangled += 1;
    Cow::Owned(text.replace("\r\n", " ").replace(['\t', '\n', '\r'], " "))
}

/// The I/O error inside a `csv` error, so that a broken pipe is seen as one
/// (the `csv` crate's own conversion makes every error `Other`).
fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}
