//! The results folder as a folder the supervisor does not fully trust.
//!
//! People run this tool as root on shared folders, so anything in the
//! results folder may have been planted: a symbolic link named
//! `joblog.jsonl` or `.tmp.<id>.json` that points at `/etc/passwd`, a FIFO
//! or a link to `/dev/zero` named `<id>.json`. As OpenSSH and git do, every
//! file in it is opened by name relative to one directory descriptor,
//! with `O_NOFOLLOW` (a link is never followed) and `O_NONBLOCK` (opening a
//! FIFO never waits for a writer), and checked to be a regular file before
//! a byte is read or written; what is read is read with a bound.
//!
//! The folder itself is the one the user named with `--out`: a link there
//! is the user's own choice and is followed, once, when it is opened.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

/// What stands under a name, when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Odd {
    /// A symbolic link (never followed).
    Symlink,
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A device or a socket.
    Special,
}

impl Odd {
    /// How a message names it.
    pub fn describe(self) -> &'static str {
        match self {
            Odd::Symlink => "a symbolic link",
            Odd::Directory => "a directory",
            Odd::Fifo => "a named pipe (FIFO)",
            Odd::Special => "a device or socket",
        }
    }

    /// What a directory entry's type says, `None` for a regular file.
    pub fn of(t: std::fs::FileType) -> Option<Odd> {
        if t.is_file() {
            None
        } else if t.is_symlink() {
            Some(Odd::Symlink)
        } else if t.is_dir() {
            Some(Odd::Directory)
        } else if t.is_fifo() {
            Some(Odd::Fifo)
        } else {
            Some(Odd::Special)
        }
    }

    fn of_mode(mode: nix::libc::mode_t) -> Option<Odd> {
        use nix::libc::{S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG};
        match mode & S_IFMT {
            S_IFREG => None,
            S_IFLNK => Some(Odd::Symlink),
            S_IFDIR => Some(Odd::Directory),
            S_IFIFO => Some(Odd::Fifo),
            _ => Some(Odd::Special),
        }
    }
}

/// The error for a name that holds something other than a regular file;
/// its message names the path and what stands there.
pub fn not_regular(path: &Path, odd: Odd) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is {}, not a regular file: the supervisor never follows, reads or writes through it; remove it, or choose another --out",
            path.display(),
            odd.describe()
        ),
    )
}

/// An open folder, whose files are reached only through its descriptor.
#[derive(Debug)]
pub struct SafeDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl SafeDir {
    /// Opens an existing folder.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// Creates the folder (and its parents) if needed, then opens it. A
    /// dangling link where the folder should be is named as such, instead
    /// of the system's "File exists".
    pub fn create(path: &Path) -> io::Result<Self> {
        if let Err(e) = std::fs::create_dir_all(path) {
            if let Ok(meta) = std::fs::symlink_metadata(path)
                && meta.file_type().is_symlink()
                && std::fs::metadata(path).is_err()
            {
                let target = std::fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "?".into());
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the results folder {} is a symbolic link to {target}, which does not exist: create that folder, or choose another --out",
                        path.display()
                    ),
                ));
            }
            return Err(e);
        }
        Self::open(path)
    }

    /// The folder's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor names are resolved against.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// `path()/name`, for messages.
    pub fn show(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` with `flags` (plus `O_NOFOLLOW | O_NONBLOCK |
    /// O_CLOEXEC`) and checks that it is a regular file: a link, a FIFO, a
    /// device or a folder is an error naming it, and nothing is read or
    /// written through it.
    pub fn open_regular(&self, name: &str, flags: OFlag, mode: Mode) -> io::Result<File> {
        let opened = nix::fcntl::openat(
            &self.fd,
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            mode,
        );
        let fd = match opened {
            Ok(fd) => fd,
            // O_NOFOLLOW on a link gives ELOOP, a folder opened for writing
            // EISDIR, a FIFO without a reader ENXIO: say what is there.
            Err(e) => {
                if e != nix::errno::Errno::ENOENT
                    && let Ok(Some(odd)) = self.odd(name)
                {
                    return Err(not_regular(&self.show(name), odd));
                }
                return Err(e.into());
            }
        };
        let st = nix::sys::stat::fstat(fd.as_fd())?;
        if let Some(odd) = Odd::of_mode(st.st_mode) {
            return Err(not_regular(&self.show(name), odd));
        }
        // Back to blocking: O_NONBLOCK was only there so that opening a FIFO
        // could not wait; on a regular file it changes nothing, but the
        // writers do not expect it.
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags & OFlag::O_APPEND))?;
        Ok(File::from(fd))
    }

    /// Reads `name`, a regular file, up to `limit` bytes: `Ok(None)` when
    /// there is no such name; an error when something else than a regular
    /// file stands there, or when it is longer than `limit`.
    pub fn read_bounded(&self, name: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        let file = match self.open_regular(name, OFlag::O_RDONLY, Mode::empty()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        file.take(limit + 1).read_to_end(buf)?;
        if buf.len() as u64 > limit {
            buf.clear();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is larger than {limit} bytes, more than any result file: not read",
                    self.show(name).display()
                ),
            ));
        }
        Ok(true)
    }

    /// What stands under `name` without following it: `Ok(None)` for a
    /// regular file, an error for no such name.
    pub fn odd(&self, name: &str) -> io::Result<Option<Odd>> {
        let st = nix::sys::stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok(Odd::of_mode(st.st_mode))
    }

    /// Removes the entry `name` itself (a link, never its target). A
    /// folder is not removed: an error names it.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        if self.odd(name)? == Some(Odd::Directory) {
            return Err(not_regular(&self.show(name), Odd::Directory));
        }
        nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .map_err(io::Error::from)
    }

    /// Renames `from` to `to`, both in this folder. An entry under `to`
    /// is replaced itself (a link there is replaced, not followed); a
    /// folder under `to` is an error naming it.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        match nix::fcntl::renameat(&self.fd, from, &self.fd, to) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EISDIR | nix::errno::Errno::ENOTEMPTY) => {
                Err(not_regular(&self.show(to), Odd::Directory))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl SafeDir {
    /// Writes `name` whole or not at all: a temporary name of its own
    /// (random, `O_EXCL`, never a link), then a rename over `name` (which
    /// replaces a link there, never follows it).
    pub fn write_atomically(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let tmp = format!(".tmp.{name}.{:016x}", fastrand::u64(..));
        let mut file = self.open_regular(
            &tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o644),
        )?;
        let written = file.write_all(bytes).and_then(|()| file.sync_data());
        drop(file);
        if let Err(e) = written.and_then(|()| self.rename(&tmp, name)) {
            let _ = self.remove(&tmp);
            return Err(e);
        }
        Ok(())
    }
}

/// The largest result file `--resume`, the check and `export` will read:
/// a result holds at most one answer, and an answer arrives on one
/// protocol line, so a file larger than two lines' worth (pretty-printing
/// adds little to the body, which is copied as it came) is not a result.
pub const MAX_RESULT_BYTES: u64 = 2 * callpool_protocol::MAX_LINE_BYTES as u64 + 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir() -> (tempfile::TempDir, SafeDir) {
        let t = tempfile::tempdir().expect("tempdir");
        let d = SafeDir::open(t.path()).expect("open");
        (t, d)
    }

    #[test]
    fn links_fifos_and_folders_are_named_never_followed() {
        let (t, d) = dir();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"keep").expect("write");
        std::os::unix::fs::symlink(&victim, t.path().join("link")).expect("symlink");
        nix::unistd::mkfifo(&t.path().join("fifo"), Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        std::fs::create_dir(t.path().join("sub")).expect("mkdir");
        let mut buf = Vec::new();
        for (name, what) in [
            ("link", "symbolic link"),
            ("fifo", "named pipe"),
            ("sub", "directory"),
        ] {
            let e = d.read_bounded(name, 100, &mut buf).expect_err(name);
            assert!(e.to_string().contains(what), "{name}: {e}");
            let e = d
                .open_regular(
                    name,
                    OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
                    Mode::from_bits_truncate(0o644),
                )
                .expect_err(name);
            assert!(e.to_string().contains(what), "{name}: {e}");
        }
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep");
        d.remove("link").expect("remove link");
        assert!(victim.exists());
        assert!(!d.read_bounded("nothing", 10, &mut buf).expect("missing"));
    }

    #[test]
    fn reads_are_bounded() {
        let (t, d) = dir();
        std::fs::File::create(t.path().join("big"))
            .and_then(|mut f| f.write_all(&[b'x'; 50]))
            .expect("write");
        let mut buf = Vec::new();
        assert!(d.read_bounded("big", 50, &mut buf).expect("fits"));
        assert_eq!(buf.len(), 50);
        let e = d.read_bounded("big", 49, &mut buf).expect_err("too big");
        assert!(e.to_string().contains("larger than 49 bytes"), "{e}");
    }
}
