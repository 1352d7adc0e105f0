//! Power loss: a node's data dir on a FUSE file system that keeps every write not yet
//! `fsync`ed in its own memory and drops it on command, as a power cut drops a disk's volatile
//! cache. Two such file systems: LazyFS, the Jepsen project's (not packaged: `LAZYFS` names
//! a binary built from its public sources, `dsrhaslab/lazyfs`), used when `LAZYFS` is set;
//! otherwise `lossyfs`, this crate's own (`src/bin/lossyfs.rs`), which cargo builds with the
//! tests. Both need `/dev/fuse` and the right to mount; tests that need them say SKIPPED
//! where the machine has neither.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which file system the data dirs go on.
#[derive(Debug, Clone)]
pub enum Backend {
    LazyFs(PathBuf),
    LossyFs(PathBuf),
}

impl Backend {
    /// What runs reports.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::LazyFs(_) => "LazyFS",
            Backend::LossyFs(_) => "lossyfs",
        }
    }
}

/// The backend this machine can run: LazyFS when `LAZYFS` names it, else lossyfs (next to the
/// test executable, or `LOSSYFS`). `Err` says why power cuts cannot run here.
pub fn backend() -> Result<Backend, String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist".into());
    }
    if let Some(path) = std::env::var_os("LAZYFS").map(PathBuf::from) {
        if !path.is_file() {
            return Err(format!("LAZYFS={} is not a file", path.display()));
        }
        Command::new("fusermount3").arg("-V").output().map_err(|e| format!("fusermount3 (for LazyFS): {e}"))?;
        return Ok(Backend::LazyFs(path));
    }
    let path = std::env::var_os("LOSSYFS").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        // target/<profile>/deps/<test> → target/<profile>/lossyfs
        exe.parent().and_then(Path::parent).unwrap_or(Path::new(".")).join("lossyfs")
    });
    if !path.is_file() {
        return Err(format!("{} was not built (cargo build -p cluster-tests)", path.display()));
    }
    Ok(Backend::LossyFs(path))
}

/// [`backend`], if it also mounts here (the right to mount FUSE is only known by trying).
pub fn usable() -> Result<Backend, String> {
    let fs = backend()?;
    let base = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mount = Mount::new(&fs, base.path())?;
    std::fs::write(mount.dir.join("probe"), "x").map_err(|e| format!("write through {}: {e}", fs.name()))?;
    drop(mount);
    Ok(fs)
}

/// One mounted file system; unmounted when dropped.
pub struct Mount {
    pub dir: PathBuf,
    backend: Backend,
    /// LazyFS's command fifo.
    fifo: PathBuf,
    process: Child,
}

impl Mount {
    /// Mounts `backend` at `<base>/mnt` over `<base>/root`.
    pub fn new(backend: &Backend, base: &Path) -> Result<Mount, String> {
        let (root, dir, fifo) = (base.join("root"), base.join("mnt"), base.join("faults.fifo"));
        std::fs::create_dir_all(&root).and(std::fs::create_dir_all(&dir)).map_err(|e| e.to_string())?;
        let mut command = match backend {
            Backend::LazyFs(bin) => {
                let config = base.join("lazyfs.toml");
                let toml = format!(
                    "[faults]\nfifo_path=\"{}\"\n[cache]\napply_eviction=false\n[cache.simple]\ncustom_size=\"1gb\"\nblocks_per_page=1\n[filesystem]\nlog_all_operations=false\nlogfile=\"\"\n",
                    fifo.display()
                );
                std::fs::write(&config, toml).map_err(|e| e.to_string())?;
                let mut c = Command::new(bin);
                c.arg(&dir).arg("--config-path").arg(&config);
                c.args(["-o", "allow_other", "-o", "modules=subdir", "-o"]).arg(format!("subdir={}", root.display()));
                c.arg("-f");
                c
            }
            Backend::LossyFs(bin) => {
                let mut c = Command::new(bin);
                c.arg(&root).arg(&dir);
                c
            }
        };
        let process = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start {}: {e}", backend.name()))?;
        let mut mount = Mount { dir, backend: backend.clone(), fifo, process };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !mount.ready() {
            if Instant::now() > deadline || mount.process.try_wait().ok().flatten().is_some() {
                return Err(format!("{} did not mount {}", backend.name(), mount.dir.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(mount)
    }

    fn ready(&self) -> bool {
        let lazyfs = matches!(self.backend, Backend::LazyFs(_));
        is_mounted(&self.dir) && (!lazyfs || self.fifo.exists())
    }

    /// Drops every write not yet synced: call it while the node is down (killed).
    pub fn power_cut(&self) -> Result<(), String> {
        match self.backend {
            Backend::LazyFs(_) => {
                let mut fifo = std::fs::OpenOptions::new().write(true).open(&self.fifo).map_err(|e| e.to_string())?;
                writeln!(fifo, "lazyfs::clear-cache").map_err(|e| e.to_string())?;
                // LazyFS applies the command asynchronously.
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            }
            // Synchronous: the write returns once the unsynced data is gone.
            Backend::LossyFs(_) => std::fs::write(self.dir.join(".lossyfs-cut"), "cut").map_err(|e| e.to_string()),
        }
    }
}

fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*dir))
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = Command::new("fusermount3").arg("-u").arg(&self.dir).status().is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
