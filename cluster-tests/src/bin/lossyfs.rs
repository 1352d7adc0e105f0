//! `lossyfs <backing dir> <mount point>`: a FUSE file system for power-cut tests. Every file
//! operation passes through to the backing directory, except file data: writes (and size
//! changes) stay in this process's memory until the file is `fsync`ed or `fdatasync`ed, and
//! writing anything to `/.lossyfs-cut` at the mount's root drops every write not synced yet,
//! as a power cut drops a disk's volatile cache. Metadata (creating, renaming and removing
//! files and directories) reaches the backing directory at once, i.e. it survives a cut even
//! unsynced: the cut is milder than a real one there.
//!
//! Written for the fault tests instead of LazyFS (the Jepsen project's tool, which does the
//! same and more) because LazyFS is not packaged and CI may only install packaged software:
//! this builds with cargo. Files are opened in direct-I/O mode so the kernel caches no data a
//! cut should have dropped, and attributes are never cached.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

const PAGE: u64 = 4096;
/// Writing to this file at the root performs a cut.
const CUT: &str = ".lossyfs-cut";
const CUT_INO: u64 = u64::MAX - 1;
const NO_CACHE: Duration = Duration::ZERO;

/// The unsynced state of one file: changed pages and its size as the writer sees it.
#[derive(Default)]
struct Dirty {
    pages: BTreeMap<u64, Vec<u8>>,
    size: Option<u64>,
}

struct LossyFs {
    backing: PathBuf,
    /// Inode numbers and the paths (relative to `backing`) they stand for.
    paths: HashMap<u64, PathBuf>,
    inodes: HashMap<PathBuf, u64>,
    next_ino: u64,
    dirty: HashMap<u64, Dirty>,
    cuts: u64,
}

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsecs.clamp(0, 999_999_999) as u32)
}

impl LossyFs {
    fn new(backing: PathBuf) -> LossyFs {
        let mut fs = LossyFs {
            backing,
            paths: HashMap::new(),
            inodes: HashMap::new(),
            next_ino: 2,
            dirty: HashMap::new(),
            cuts: 0,
        };
        fs.paths.insert(fuser::FUSE_ROOT_ID, PathBuf::new());
        fs.inodes.insert(PathBuf::new(), fuser::FUSE_ROOT_ID);
        fs
    }

    fn ino(&mut self, rel: &Path) -> u64 {
        if let Some(&ino) = self.inodes.get(rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.paths.insert(ino, rel.to_path_buf());
        self.inodes.insert(rel.to_path_buf(), ino);
        ino
    }

    fn rel(&self, ino: u64) -> Result<PathBuf, i32> {
        self.paths.get(&ino).cloned().ok_or(libc::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, i32> {
        Ok(self.rel(parent)?.join(name))
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    fn attr(&mut self, rel: &Path) -> Result<FileAttr, i32> {
        let meta = fs::symlink_metadata(self.full(rel)).map_err(errno)?;
        let ino = self.ino(rel);
        let size = self.dirty.get(&ino).and_then(|d| d.size).unwrap_or(meta.len());
        let kind = if meta.is_dir() {
            FileType::Directory
        } else if meta.file_type().is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        Ok(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: time(meta.ctime(), meta.ctime_nsec()),
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    fn cut_attr() -> FileAttr {
        FileAttr {
            ino: CUT_INO,
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::RegularFile,
            perm: 0o600,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        }
    }

    /// The backing file's bytes in `[offset, offset + len)`, zero-filled past its end.
    fn backing_bytes(&self, rel: &Path, offset: u64, len: u64) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; len as usize];
        let file = File::open(self.full(rel)).map_err(errno)?;
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], offset + done as u64).map_err(errno)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(buf)
    }

    fn read_range(&self, ino: u64, offset: u64, len: u64) -> Result<Vec<u8>, i32> {
        let rel = self.rel(ino)?;
        let size = match self.dirty.get(&ino).and_then(|d| d.size) {
            Some(size) => size,
            None => fs::metadata(self.full(&rel)).map_err(errno)?.len(),
        };
        let end = (offset + len).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = self.backing_bytes(&rel, offset, end - offset)?;
        if let Some(d) = self.dirty.get(&ino) {
            for (&page, data) in d.pages.range(offset / PAGE..=(end - 1) / PAGE) {
                let start = page * PAGE;
                for (i, b) in data.iter().enumerate() {
                    let at = start + i as u64;
                    if at >= offset && at < end {
                        buf[(at - offset) as usize] = *b;
                    }
                }
            }
        }
        Ok(buf)
    }

    fn write_range(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<(), i32> {
        let rel = self.rel(ino)?;
        let current = match self.dirty.get(&ino).and_then(|d| d.size) {
            Some(size) => size,
            None => fs::metadata(self.full(&rel)).map_err(errno)?.len(),
        };
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let page = at / PAGE;
            let within = (at % PAGE) as usize;
            let n = rest.len().min(PAGE as usize - within);
            if !self.dirty.get(&ino).is_some_and(|d| d.pages.contains_key(&page)) {
                let old = self.read_range(ino, page * PAGE, PAGE)?;
                let mut full = vec![0u8; PAGE as usize];
                full[..old.len()].copy_from_slice(&old);
                self.dirty.entry(ino).or_default().pages.insert(page, full);
            }
            let dirty = self.dirty.entry(ino).or_default();
            if let Some(p) = dirty.pages.get_mut(&page) {
                p[within..within + n].copy_from_slice(&rest[..n]);
            }
            at += n as u64;
            rest = &rest[n..];
        }
        let dirty = self.dirty.entry(ino).or_default();
        dirty.size = Some(current.max(offset + data.len() as u64));
        Ok(())
    }

    /// Writes `ino`'s unsynced pages and size to the backing file and syncs it.
    fn sync(&mut self, ino: u64) -> Result<(), i32> {
        let Some(dirty) = self.dirty.remove(&ino) else { return Ok(()) };
        let rel = self.rel(ino)?;
        let file = OpenOptions::new().write(true).open(self.full(&rel)).map_err(errno)?;
        let size = dirty.size.unwrap_or(file.metadata().map_err(errno)?.len());
        for (page, data) in &dirty.pages {
            let start = page * PAGE;
            if start >= size {
                continue;
            }
            let n = ((size - start).min(PAGE)) as usize;
            file.write_all_at(&data[..n], start).map_err(errno)?;
        }
        file.set_len(size).map_err(errno)?;
        file.sync_all().map_err(errno)
    }

    fn entry(&mut self, rel: &Path, reply: ReplyEntry) {
        match self.attr(rel) {
            Ok(attr) => reply.entry(&NO_CACHE, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    /// Renames the inode table's paths under `from` to `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        if let Some(old) = self.inodes.remove(to) {
            self.paths.remove(&old);
            self.dirty.remove(&old);
        }
        let affected: Vec<(PathBuf, u64)> =
            self.inodes.iter().filter(|(p, _)| p.starts_with(from)).map(|(p, &i)| (p.clone(), i)).collect();
        for (path, ino) in affected {
            // (`join("")` would add a trailing slash, which names a directory.)
            let new = match path.strip_prefix(from) {
                Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
                _ => to.to_path_buf(),
            };
            self.inodes.remove(&path);
            self.inodes.insert(new.clone(), ino);
            self.paths.insert(ino, new);
        }
    }

    /// Removes `name` from the backing directory with `remove` and forgets its inode.
    fn remove(&mut self, parent: u64, name: &OsStr, remove: fn(&Path) -> std::io::Result<()>, reply: ReplyEmpty) {
        let result = self.child(parent, name).and_then(|rel| {
            remove(&self.full(&rel)).map_err(errno)?;
            self.forget_path(&rel);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn forget_path(&mut self, rel: &Path) {
        if let Some(ino) = self.inodes.remove(rel) {
            self.paths.remove(&ino);
            self.dirty.remove(&ino);
        }
    }
}

impl Filesystem for LossyFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent == fuser::FUSE_ROOT_ID && name == CUT {
            return reply.entry(&NO_CACHE, &Self::cut_attr(), 0);
        }
        match self.child(parent, name) {
            Ok(rel) => self.entry(&rel, reply),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        if ino == CUT_INO {
            return reply.attr(&NO_CACHE, &Self::cut_attr());
        }
        match self.rel(ino).and_then(|rel| self.attr(&rel)) {
            Ok(attr) => reply.attr(&NO_CACHE, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        if ino == CUT_INO {
            return reply.attr(&NO_CACHE, &Self::cut_attr());
        }
        let result = (|| {
            let rel = self.rel(ino)?;
            if let Some(mode) = mode {
                fs::set_permissions(self.full(&rel), fs::Permissions::from_mode(mode)).map_err(errno)?;
            }
            if let Some(size) = size {
                // A size change is file data: unsynced like a write.
                let dirty = self.dirty.entry(ino).or_default();
                dirty.pages.retain(|&p, _| p * PAGE < size);
                if let Some(last) = dirty.pages.get_mut(&(size / PAGE)) {
                    last[(size % PAGE) as usize..].fill(0);
                }
                let backing = fs::metadata(self.full(&rel)).map_err(errno)?.len();
                if size < backing {
                    // Bytes past the new end read as zeros if the file grows again.
                    for page in size / PAGE..backing.div_ceil(PAGE) {
                        let mut data = self.read_range(ino, page * PAGE, PAGE).unwrap_or_default();
                        data.resize(PAGE as usize, 0);
                        let from = size.saturating_sub(page * PAGE) as usize;
                        data[from.min(PAGE as usize)..].fill(0);
                        self.dirty.entry(ino).or_default().pages.insert(page, data);
                    }
                }
                self.dirty.entry(ino).or_default().size = Some(size);
            }
            self.attr(&rel)
        })();
        match result {
            Ok(attr) => reply.attr(&NO_CACHE, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let result = self.child(parent, name).and_then(|rel| {
            fs::create_dir(self.full(&rel)).map_err(errno)?;
            let _ = fs::set_permissions(self.full(&rel), fs::Permissions::from_mode(mode));
            Ok(rel)
        });
        match result {
            Ok(rel) => self.entry(&rel, reply),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, |p| fs::remove_file(p), reply);
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, |p| fs::remove_dir(p), reply);
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let result = self.child(parent, name).and_then(|from| {
            let to = self.child(newparent, newname)?;
            fs::rename(self.full(&from), self.full(&to)).map_err(errno)?;
            self.moved(&from, &to);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if ino != CUT_INO && self.rel(ino).is_err() {
            return reply.error(libc::ENOENT);
        }
        reply.opened(0, fuser::consts::FOPEN_DIRECT_IO);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        if ino == CUT_INO {
            return reply.data(format!("{}\n", self.cuts).as_bytes());
        }
        match self.read_range(ino, offset.max(0) as u64, u64::from(size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        if ino == CUT_INO {
            self.dirty.clear();
            self.cuts += 1;
            return reply.written(data.len() as u32);
        }
        match self.write_range(ino, offset.max(0) as u64, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        // close() is not a sync.
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        match self.sync(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let rel = match self.rel(ino) {
            Ok(rel) => rel,
            Err(e) => return reply.error(e),
        };
        let listing = match fs::read_dir(self.full(&rel)) {
            Ok(listing) => listing,
            Err(e) => return reply.error(errno(e)),
        };
        let mut entries = vec![(ino, FileType::Directory, PathBuf::from(".")), (ino, FileType::Directory, "..".into())];
        for entry in listing.flatten() {
            let name = PathBuf::from(entry.file_name());
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => FileType::Directory,
                Ok(t) if t.is_symlink() => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            let child = self.ino(&rel.join(&name));
            entries.push((child, kind, name));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(ino, (i + 1) as i64, kind, name.as_os_str()) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        // Metadata already reached the backing directory.
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let path = std::ffi::CString::new(self.backing.as_os_str().as_bytes()).unwrap_or_default();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `st` a writable statvfs.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return reply.error(libc::EIO);
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            255,
            st.f_frsize as u32,
        );
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.child(parent, name).and_then(|rel| {
            let mut options = OpenOptions::new();
            options.write(true).create(true).mode(mode);
            if flags & libc::O_EXCL != 0 {
                options.create_new(true);
            }
            options.open(self.full(&rel)).map_err(errno)?;
            if flags & libc::O_TRUNC != 0 {
                let ino = self.ino(&rel);
                self.dirty.entry(ino).or_default().size = Some(0);
            }
            self.attr(&rel)
        });
        match result {
            Ok(attr) => reply.created(&NO_CACHE, &attr, 0, 0, fuser::consts::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, backing, mountpoint] = args.as_slice() else {
        eprintln!("usage: lossyfs <backing dir> <mount point>");
        std::process::exit(2);
    };
    let backing = match fs::canonicalize(backing) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("lossyfs: backing dir {backing}: {e}");
            std::process::exit(2);
        }
    };
    let options = [MountOption::FSName("lossyfs".into()), MountOption::DefaultPermissions];
    if let Err(e) = fuser::mount2(LossyFs::new(backing), mountpoint, &options) {
        eprintln!("lossyfs: mount {mountpoint}: {e}");
        std::process::exit(1);
    }
}
