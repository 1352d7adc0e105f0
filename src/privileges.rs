//! Dropping root after every listener is bound: Hipache master's `user` / `group`
//! (docs/hipache-behaviour.md §1.1), which users rely on to bind port 80 and then run as an
//! unprivileged account.
//!
//! Order matters: supplementary groups, then the group, then the user (after `setuid` the
//! process may no longer change groups). glibc applies each call to every thread of the
//! process, so the runtime's workers and the log's flush thread drop too. What the node keeps writing
//! after the drop (its data dir, the access log it reopens on SIGUSR1) is handed to the new
//! owner first, and the data dir is checked to be writable, so a wrong setting stops the start
//! with a message instead of failing at the first snapshot.

use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("{key}: no such {what} {name:?} on this machine")]
    Unknown { key: &'static str, what: &'static str, name: String },
    #[error("{key}: cannot look up {name:?}: {source}")]
    Lookup { key: &'static str, name: String, source: nix::Error },
    #[error("{key}: cannot switch to {name:?}: not started as root (start as root, or remove `user`/`group` from the config)")]
    NotRoot { key: &'static str, name: String },
    #[error("{key}: cannot switch to {name:?}: {step} failed: {source}")]
    Switch { key: &'static str, name: String, step: &'static str, source: nix::Error },
    #[error("user: cannot hand {} to {user:?}: {source}", path.display())]
    Chown { user: String, path: PathBuf, source: std::io::Error },
    #[error("user: {user:?} cannot write to {} (cluster.dataDir): {source}", path.display())]
    NotWritable { user: String, path: PathBuf, source: std::io::Error },
}

/// The account to run as, resolved before anything changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub uid: Uid,
    pub gid: Gid,
}

impl Account {
    /// Resolves `user` (name or numeric id) and `group` (name or id; defaults to the user's
    /// primary group). `None` when neither is set: nothing to drop.
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Account>, PrivilegeError> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let (name, uid, primary) = match user {
            Some(u) => {
                let by_id = u.parse::<u32>().ok();
                let found = match by_id {
                    Some(id) => User::from_uid(Uid::from_raw(id)),
                    None => User::from_name(u),
                }
                .map_err(|source| PrivilegeError::Lookup {
                    key: "user",
                    name: u.to_owned(),
                    source,
                })?;
                match (found, by_id) {
                    (Some(found), _) => (found.name, found.uid, Some(found.gid)),
                    // A numeric id needs no passwd entry (containers often run as bare ids).
                    (None, Some(id)) => (u.to_owned(), Uid::from_raw(id), None),
                    (None, None) => {
                        return Err(PrivilegeError::Unknown { key: "user", what: "user", name: u.to_owned() })
                    }
                }
            }
            None => ("root".to_owned(), Uid::from_raw(0), None),
        };
        let gid = match group {
            Some(g) => match g.parse::<u32>() {
                Ok(id) => Gid::from_raw(id),
                Err(_) => {
                    Group::from_name(g)
                        .map_err(|source| PrivilegeError::Lookup { key: "group", name: g.to_owned(), source })?
                        .ok_or_else(|| PrivilegeError::Unknown { key: "group", what: "group", name: g.to_owned() })?
                        .gid
                }
            },
            None => primary.unwrap_or_else(|| Gid::from_raw(uid.as_raw())),
        };
        Ok(Some(Account { user: name, uid, gid }))
    }

    /// Hands `owned` (recursively) to the account, switches the whole process to it, and
    /// checks that `data_dir` is still writable. A no-op when already running as the account.
    pub fn switch(&self, owned: &[&Path], data_dir: &Path) -> Result<(), PrivilegeError> {
        if Uid::current() == self.uid && Gid::current() == self.gid {
            return Ok(());
        }
        if !Uid::effective().is_root() {
            let key = if Uid::current() == self.uid { "group" } else { "user" };
            return Err(PrivilegeError::NotRoot { key, name: self.user.clone() });
        }
        for path in owned {
            chown_tree(path, self.uid, self.gid).map_err(|(path, source)| PrivilegeError::Chown {
                user: self.user.clone(),
                path,
                source,
            })?;
        }
        let step = |key, step, result: nix::Result<()>| {
            result.map_err(|source| PrivilegeError::Switch { key, name: self.user.clone(), step, source })
        };
        step("group", "setgroups", nix::unistd::setgroups(&[self.gid]))?;
        step("group", "setgid", nix::unistd::setgid(self.gid))?;
        step("user", "setuid", nix::unistd::setuid(self.uid))?;
        // Dropped for good: a process that can become root again has not dropped anything.
        if !self.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(PrivilegeError::Switch {
                key: "user",
                name: self.user.clone(),
                step: "setuid (root could be regained)",
                source: nix::Error::EPERM,
            });
        }
        let probe = data_dir.join(".hipache-raft-write-check");
        std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe)).map_err(|source| {
            PrivilegeError::NotWritable { user: self.user.clone(), path: data_dir.to_path_buf(), source }
        })
    }
}

/// `lchown -R`: symbolic links are changed themselves, never followed out of the tree.
fn chown_tree(path: &Path, uid: Uid, gid: Gid) -> Result<(), (PathBuf, std::io::Error)> {
    let fail = |e| (path.to_path_buf(), e);
    std::os::unix::fs::lchown(path, Some(uid.as_raw()), Some(gid.as_raw())).map_err(fail)?;
    let meta = std::fs::symlink_metadata(path).map_err(fail)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(fail)? {
            chown_tree(&entry.map_err(fail)?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_ids() {
        assert_eq!(Account::resolve(None, None).unwrap(), None);
        let root = Account::resolve(Some("root"), None).unwrap().unwrap();
        assert_eq!((root.uid.as_raw(), root.gid.as_raw()), (0, 0));
        let bare = Account::resolve(Some("4242"), Some("4343")).unwrap().unwrap();
        assert_eq!((bare.uid.as_raw(), bare.gid.as_raw()), (4242, 4343));
        let e = Account::resolve(Some("no-such-user-hipache"), None).unwrap_err().to_string();
        assert!(e.starts_with("user: no such user"), "{e}");
        let e = Account::resolve(Some("root"), Some("no-such-group-hipache")).unwrap_err().to_string();
        assert!(e.starts_with("group: no such group"), "{e}");
    }
}
