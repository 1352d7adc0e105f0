//! Power loss: a node's data dir on LazyFS, a FUSE file system from the Jepsen project that
//! keeps every write not yet `fsync`ed in its own cache and drops that cache on command, as a
//! power cut does to a disk's volatile state. LazyFS is not packaged; `LAZYFS` names its
//! binary (built from its public sources, `dsrhaslab/lazyfs`), and tests that need it say
//! SKIPPED without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The LazyFS binary, if this machine can run it: `LAZYFS` set, `/dev/fuse` and `fusermount3`
/// present. `Err` says why not.
pub fn binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("LAZYFS").map(PathBuf::from).ok_or("LAZYFS is not set")?;
    if !path.is_file() {
        return Err(format!("LAZYFS={} is not a file", path.display()));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist".into());
    }
    Command::new("fusermount3").arg("-V").output().map_err(|e| format!("fusermount3: {e}"))?;
    Ok(path)
}

/// One mounted LazyFS; unmounted when dropped.
pub struct Mount {
    pub dir: PathBuf,
    fifo: PathBuf,
    process: Child,
}

impl Mount {
    /// Mounts a LazyFS at `<base>/mnt` over `<base>/root`.
    pub fn new(lazyfs: &Path, base: &Path) -> Result<Mount, String> {
        let (root, dir, fifo) = (base.join("root"), base.join("mnt"), base.join("faults.fifo"));
        std::fs::create_dir_all(&root).and(std::fs::create_dir_all(&dir)).map_err(|e| e.to_string())?;
        let config = base.join("lazyfs.toml");
        let toml = format!(
            "[faults]\nfifo_path=\"{}\"\n[cache]\napply_eviction=false\n[cache.simple]\ncustom_size=\"1gb\"\nblocks_per_page=1\n[filesystem]\nlog_all_operations=false\nlogfile=\"\"\n",
            fifo.display()
        );
        std::fs::write(&config, toml).map_err(|e| e.to_string())?;
        let process = Command::new(lazyfs)
            .arg(&dir)
            .arg("--config-path")
            .arg(&config)
            .args(["-o", "allow_other", "-o", "modules=subdir", "-o"])
            .arg(format!("subdir={}", root.display()))
            .arg("-f")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start LazyFS: {e}"))?;
        let mount = Mount { dir, fifo, process };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(mount.fifo.exists() && is_mounted(&mount.dir)) {
            if Instant::now() > deadline {
                return Err(format!("LazyFS did not mount {}", mount.dir.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(mount)
    }

    /// Drops every write not yet synced: call it while the node is down (killed).
    pub fn power_cut(&self) -> Result<(), String> {
        let mut fifo = std::fs::OpenOptions::new().write(true).open(&self.fifo).map_err(|e| e.to_string())?;
        writeln!(fifo, "lazyfs::clear-cache").map_err(|e| e.to_string())?;
        // LazyFS applies the command asynchronously.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }
}

fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*dir))
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-u").arg(&self.dir).status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
