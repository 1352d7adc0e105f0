//! How command code sees a database: `View` for reads, `Writer` for writes.
//!
//! Both hide keys past their deadline. The `Writer` also deletes them when it touches them
//! (lazy expiry, recorded as a change), stamps the version of what it modifies, deletes
//! containers that become empty, and records every change, so no command can forget one of
//! those rules.

use bytes::Bytes;

use super::db::Db;
use super::reply::Reply;
use super::store::{Entry, Keyspace, Publisher};
use super::value::{Kind, Value};

pub(crate) struct View<'a> {
    db: &'a Db,
    pub(crate) now: u64,
}

impl<'a> View<'a> {
    pub(crate) fn new(db: &'a Db, now: u64) -> View<'a> {
        View { db, now }
    }

    /// The live entry at `key`.
    pub(crate) fn entry(&self, key: &[u8]) -> Option<&'a Entry> {
        self.db.get(key).filter(|e| !e.is_expired(self.now))
    }

    /// The live value at `key` if it has type `K`, or `WRONGTYPE`.
    pub(crate) fn get<K: Kind>(&self, key: &[u8]) -> Result<Option<&'a K>, Reply> {
        self.entry(key).map(|e| K::of(&e.value)).transpose()
    }

    pub(crate) fn db(&self) -> &'a Db {
        self.db
    }
}

pub(crate) struct Writer<'a> {
    ks: &'a mut Keyspace,
    db: usize,
    pub(crate) now: u64,
    index: u64,
    publisher: &'a mut dyn Publisher,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(
        ks: &'a mut Keyspace,
        db: usize,
        now: u64,
        index: u64,
        publisher: &'a mut dyn Publisher,
    ) -> Writer<'a> {
        Writer { ks, db, now, index, publisher }
    }

    pub(crate) fn db(&self) -> usize {
        self.db
    }

    /// A read of the current database after expiring `key` (for writes that read first).
    pub(crate) fn view(&mut self, key: &[u8]) -> View<'_> {
        self.ks.expire_if_due(self.db, key, self.now);
        View::new(&self.ks.dbs[self.db], self.now)
    }

    pub(crate) fn get<K: Kind>(&mut self, key: &[u8]) -> Result<Option<&K>, Reply> {
        let now = self.now;
        self.ks.expire_if_due(self.db, key, now);
        View::new(&self.ks.dbs[self.db], now).get(key)
    }

    pub(crate) fn exists(&mut self, key: &[u8]) -> bool {
        self.view(key).entry(key).is_some()
    }

    /// Runs `f` on the `K` at `key` in place; `f` returns its result and whether it changed
    /// anything. With `create`, a missing key starts as an empty `K` (kept only if `f` leaves
    /// something in it). `Ok(None)`: the key is missing and `create` is false.
    pub(crate) fn modify<K, T>(
        &mut self,
        key: &Bytes,
        create: bool,
        f: impl FnOnce(&mut K) -> (T, bool),
    ) -> Result<Option<T>, Reply>
    where
        K: Kind + Default,
    {
        self.ks.expire_if_due(self.db, key, self.now);
        let db = &mut self.ks.dbs[self.db];
        let index = self.index;
        let run = |value: &mut Value, version: &mut u64| {
            let inner = K::project_mut(value).ok_or_else(Reply::wrong_type)?;
            let (out, changed) = f(inner);
            if changed {
                *version = index;
            }
            Ok((out, changed, inner.is_vacant()))
        };
        let (out, changed, vacant) = match db.update(key, run) {
            Ok(result) => result?,
            Err(run) if create => {
                let mut value = K::default().wrap();
                let mut version = index;
                let (out, changed, vacant) = run(&mut value, &mut version)?;
                if !changed || vacant {
                    return Ok(Some(out));
                }
                db.insert(key, Entry::new(value, None, version));
                (out, changed, false)
            }
            Err(_) => return Ok(None),
        };
        if vacant {
            db.remove(key);
        }
        if changed {
            self.ks.modified(self.db, key.clone(), self.index);
        }
        Ok(Some(out))
    }

    /// Stores `value` at `key`, replacing whatever was there, with the given deadline.
    /// A deadline already past deletes the key instead (Redis' `SET ... EXAT <past>`).
    pub(crate) fn put(&mut self, key: &Bytes, value: Value, deadline: Option<u64>) {
        if deadline.is_some_and(|at| at <= self.now) {
            self.delete(key);
            return;
        }
        self.ks.dbs[self.db].insert(key, Entry::new(value, deadline, self.index));
        self.ks.modified(self.db, key.clone(), self.index);
    }

    /// Deletes a live key; false if there was none.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        if self.ks.expire_if_due(self.db, key, self.now) {
            return false;
        }
        let removed = self.ks.dbs[self.db].remove(key);
        if removed {
            self.ks.modified(self.db, Bytes::copy_from_slice(key), self.index);
        }
        removed
    }

    /// Removes and returns the live entry at `key` (RENAME moves it).
    pub(crate) fn take(&mut self, key: &[u8]) -> Option<Entry> {
        self.ks.expire_if_due(self.db, key, self.now);
        let entry = self.ks.dbs[self.db].take(key)?;
        self.ks.modified(self.db, Bytes::copy_from_slice(key), self.index);
        Some(entry)
    }

    /// Sets or clears a live key's deadline; a deadline already past deletes the key.
    /// False if the key does not exist.
    pub(crate) fn set_deadline(&mut self, key: &Bytes, deadline: Option<u64>) -> bool {
        if deadline.is_some_and(|at| at <= self.now) {
            return self.delete(key);
        }
        self.ks.expire_if_due(self.db, key, self.now);
        let found = self.ks.dbs[self.db].set_deadline(key, deadline, self.index);
        if found {
            self.ks.modified(self.db, key.clone(), self.index);
        }
        found
    }

    /// Empties database `db`, recording every removed key.
    pub(crate) fn flush(&mut self, db: usize) {
        let old = std::mem::take(&mut self.ks.dbs[db]);
        for key in old.keys() {
            self.ks.modified(db, Bytes::copy_from_slice(key), self.index);
        }
    }

    pub(crate) fn publish(&mut self, channel: &Bytes, message: &Bytes) -> i64 {
        self.publisher.publish(channel, message)
    }
}
