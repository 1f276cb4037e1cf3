#!/usr/bin/env python3
"""A file system without O_TMPFILE, for tests: a FUSE file system that
passes every operation through to a backing folder, and answers the
kernel's FUSE_TMPFILE request with ENOSYS, as FUSE file systems that do not
implement it do (the kernel then fails open(O_TMPFILE) with EOPNOTSUPP).

It speaks the kernel's FUSE protocol on /dev/fuse itself, with the
standard library only (no libfuse), and mounts with mount(2), so it needs
root. Single-threaded: requests are answered one at a time.

Usage: no_tmpfile_fs.py BACKING MOUNTPOINT LOG

Prints "mounted" on stdout once mounted; runs until MOUNTPOINT is
unmounted. Appends one line to LOG per notable request: "tmpfile" (refused)
and "rename OLD NEW".
"""
import ctypes
import errno
import os
import stat
import struct
import sys

BACKING, MOUNTPOINT, LOG = sys.argv[1:4]

FUSE_LOOKUP, FUSE_FORGET, FUSE_GETATTR, FUSE_SETATTR = 1, 2, 3, 4
FUSE_MKDIR, FUSE_UNLINK, FUSE_RMDIR, FUSE_RENAME = 9, 10, 11, 12
FUSE_OPEN, FUSE_READ, FUSE_WRITE, FUSE_STATFS, FUSE_RELEASE = 14, 15, 16, 17, 18
FUSE_FSYNC, FUSE_FLUSH, FUSE_INIT = 20, 25, 26
FUSE_OPENDIR, FUSE_READDIR, FUSE_RELEASEDIR, FUSE_FSYNCDIR = 27, 28, 29, 30
FUSE_ACCESS, FUSE_CREATE, FUSE_INTERRUPT = 34, 35, 36
FUSE_BATCH_FORGET, FUSE_RENAME2, FUSE_TMPFILE = 42, 45, 51
NO_REPLY = {FUSE_FORGET, FUSE_BATCH_FORGET, FUSE_INTERRUPT}

FUSE_BIG_WRITES = 1 << 5
FOPEN_DIRECT_IO = 1
FATTR_MODE, FATTR_SIZE = 1, 8
MAX_WRITE = 128 * 1024

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")


class Fs:
    def __init__(self):
        self.paths = {1: BACKING}  # node id -> backing path
        self.nodes = {BACKING: 1}  # backing path -> node id
        self.next_node = 2
        self.fds = {}  # file handle -> os fd (or None for a folder)
        self.next_fh = 1

    def node(self, path):
        if path not in self.nodes:
            self.nodes[path] = self.next_node
            self.paths[self.next_node] = path
            self.next_node += 1
        return self.nodes[path]

    def child(self, parent, name):
        return os.path.join(self.paths[parent], name.decode())

    def attr(self, path, fh=None):
        fd = self.fds.get(fh)
        st = os.fstat(fd) if fd is not None else os.lstat(path)
        return ATTR.pack(
            self.node(path), st.st_size, st.st_blocks,
            int(st.st_atime), int(st.st_mtime), int(st.st_ctime),
            st.st_atime_ns % 10**9, st.st_mtime_ns % 10**9, st.st_ctime_ns % 10**9,
            st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_rdev, 4096, 0)

    def entry(self, path):
        # Nothing is cached by the kernel: every look goes to the backing folder.
        attr = self.attr(path)
        return struct.pack("<QQQQII", self.node(path), 0, 0, 0, 0, 0) + attr

    def attr_out(self, path, fh=None):
        return struct.pack("<QII", 0, 0, 0) + self.attr(path, fh)

    def open_out(self, fd):
        fh = self.next_fh
        self.next_fh += 1
        self.fds[fh] = fd
        return struct.pack("<QII", fh, FOPEN_DIRECT_IO if fd is not None else 0, 0)

    def rename(self, old, new):
        os.rename(old, new)
        for path in [p for p in self.nodes if p == old or p.startswith(old + "/")]:
            node = self.nodes.pop(path)
            moved = new + path[len(old):]
            self.nodes.pop(moved, None)
            self.nodes[moved] = node
            self.paths[node] = moved
        with open(LOG, "a") as f:
            f.write(f"rename {os.path.basename(old)} {os.path.basename(new)}\n")

    def handle(self, op, node, body):
        path = self.paths.get(node)
        if op == FUSE_INIT:
            major, minor, readahead, _flags = struct.unpack_from("<IIII", body)
            return struct.pack("<IIIIHHIIHHII", 7, 31, readahead, FUSE_BIG_WRITES,
                               16, 12, MAX_WRITE, 1, 0, 0, 0, 0) + bytes(24)
        if path is None:
            raise OSError(errno.ESTALE, "unknown node")
        if op == FUSE_LOOKUP:
            return self.entry(self.child(node, body.rstrip(b"\0")))
        if op == FUSE_GETATTR:
            _flags, _dummy, fh = struct.unpack_from("<IIQ", body)
            return self.attr_out(path, fh)
        if op == FUSE_SETATTR:
            valid, _pad, fh, size = struct.unpack_from("<IIQQ", body)
            mode = struct.unpack_from("<I", body, 68)[0]
            if valid & FATTR_SIZE:
                os.truncate(path, size)
            if valid & FATTR_MODE:
                os.chmod(path, stat.S_IMODE(mode))
            return self.attr_out(path)
        if op == FUSE_MKDIR:
            mode, _umask = struct.unpack_from("<II", body)
            new = self.child(node, body[8:].rstrip(b"\0"))
            os.mkdir(new, stat.S_IMODE(mode))
            return self.entry(new)
        if op in (FUSE_UNLINK, FUSE_RMDIR):
            gone = self.child(node, body.rstrip(b"\0"))
            (os.unlink if op == FUSE_UNLINK else os.rmdir)(gone)
            return b""
        if op in (FUSE_RENAME, FUSE_RENAME2):
            newdir = struct.unpack_from("<Q", body)[0]
            names = body[8 if op == FUSE_RENAME else 16:].split(b"\0")
            if op == FUSE_RENAME2 and struct.unpack_from("<I", body, 8)[0] != 0:
                raise OSError(errno.EINVAL, "rename flags")
            self.rename(self.child(node, names[0]), self.child(newdir, names[1]))
            return b""
        if op == FUSE_OPEN:
            flags = struct.unpack_from("<I", body)[0]
            flags &= ~(os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_TRUNC)
            return self.open_out(os.open(path, flags))
        if op == FUSE_CREATE:
            flags, mode, _umask, _open_flags = struct.unpack_from("<IIII", body)
            new = self.child(node, body[16:].rstrip(b"\0"))
            fd = os.open(new, (flags & ~os.O_APPEND) | os.O_CREAT, stat.S_IMODE(mode))
            return self.entry(new) + self.open_out(fd)
        if op == FUSE_READ:
            fh, offset, size = struct.unpack_from("<QQI", body)
            return os.pread(self.fds[fh], size, offset)
        if op == FUSE_WRITE:
            fh, offset, size = struct.unpack_from("<QQI", body)
            n = os.pwrite(self.fds[fh], body[40:40 + size], offset)
            return struct.pack("<II", n, 0)
        if op in (FUSE_RELEASE, FUSE_RELEASEDIR):
            fd = self.fds.pop(struct.unpack_from("<Q", body)[0], None)
            if fd is not None:
                os.close(fd)
            return b""
        if op in (FUSE_FLUSH, FUSE_FSYNC, FUSE_FSYNCDIR, FUSE_ACCESS):
            return b""
        if op == FUSE_OPENDIR:
            return self.open_out(None)
        if op == FUSE_READDIR:
            _fh, offset, size = struct.unpack_from("<QQI", body)
            out = b""
            names = sorted(os.listdir(path))
            for i, name in enumerate(names[offset:], start=offset + 1):
                full = os.path.join(path, name)
                raw = name.encode()
                kind = stat.S_IFMT(os.lstat(full).st_mode) >> 12
                dirent = struct.pack("<QQII", self.node(full), i, len(raw), kind) + raw
                dirent += bytes(-len(dirent) % 8)
                if len(out) + len(dirent) > size:
                    break
                out += dirent
            return out
        if op == FUSE_STATFS:
            st = os.statvfs(path)
            return struct.pack("<QQQQQIIII", st.f_blocks, st.f_bfree, st.f_bavail,
                               st.f_files, st.f_ffree, st.f_bsize, st.f_namemax,
                               st.f_frsize, 0) + bytes(24)
        if op == FUSE_TMPFILE:
            with open(LOG, "a") as f:
                f.write("tmpfile\n")
        raise OSError(errno.ENOSYS, "not implemented")


def main():
    fuse = os.open("/dev/fuse", os.O_RDWR)
    libc = ctypes.CDLL(None, use_errno=True)
    opts = f"fd={fuse},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
    ms_nosuid, ms_nodev = 2, 4
    if libc.mount(b"no_tmpfile_fs", MOUNTPOINT.encode(), b"fuse", ms_nosuid | ms_nodev, opts) != 0:
        e = ctypes.get_errno()
        sys.exit(f"mount: {os.strerror(e)}")
    print("mounted", flush=True)
    fs = Fs()
    while True:
        try:
            req = os.read(fuse, MAX_WRITE + 64 * 1024)
        except OSError as e:
            if e.errno == errno.ENODEV:  # unmounted
                return
            if e.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                continue
            raise
        _len, op, unique, node, _uid, _gid, _pid, _ext, _pad = IN_HEADER.unpack_from(req)
        body = req[IN_HEADER.size:]
        try:
            payload, error = fs.handle(op, node, body), 0
        except OSError as e:
            payload, error = b"", -(e.errno or errno.EIO)
        if op in NO_REPLY:
            continue
        try:
            os.write(fuse, OUT_HEADER.pack(OUT_HEADER.size + len(payload), error, unique) + payload)
        except OSError as e:
            if e.errno != errno.ENOENT:  # the request was interrupted
                raise


if __name__ == "__main__":
    main()
