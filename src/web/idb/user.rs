//! The user's database, `crm-sync:<user>`: its stores and schema, values
//! read and written with serde.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{Batch, CloseReason, Db, OpenOptions, Schema, Upgrade};
use crate::error::Error;

/// The stores of the user's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    /// Confirmed records and their staged changes, keyed by
    /// [`record_key`].
    Records,
    /// Mutations not yet acknowledged, keyed by mutation id (so `all`
    /// returns them in id order: make ids sortable by creation).
    Outbox,
    /// Conflicts waiting for a person, keyed by conflict id.
    Conflicts,
    /// Mutations the server refused for good (dead letters), keyed by
    /// mutation id.
    Failed,
    /// Past sync runs, keyed by sync id.
    SyncLog,
    /// Cursor, current sync job id and other single values, keyed by name.
    Meta,
}

impl Store {
    /// Every store.
    pub const ALL: [Store; 6] = [
        Store::Records,
        Store::Outbox,
        Store::Conflicts,
        Store::Failed,
        Store::SyncLog,
        Store::Meta,
    ];

    /// The object store's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::Outbox => "outbox",
            Self::Conflicts => "conflicts",
            Self::Failed => "failed",
            Self::SyncLog => "synclog",
            Self::Meta => "meta",
        }
    }
}

impl AsRef<str> for Store {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

/// The key of a record in [`Store::Records`]: `collection/id`.
/// Collections never contain `/` (the client checks their names), so the
/// records of one collection share the prefix `collection/`.
pub fn record_key(collection: &str, id: &str) -> String {
    format!("{collection}/{id}")
}

fn user_schema_v1(upgrade: &Upgrade) -> Result<(), Error> {
    Store::ALL
        .iter()
        .try_for_each(|store| upgrade.create_store(store.name()))
}

/// The schema of the user's database. A new version appends a migration.
pub const USER_SCHEMA: Schema = Schema {
    version: 1,
    migrations: &[user_schema_v1],
};

/// The user's database, `crm-sync:<user>`: records, outbox, conflicts,
/// failed mutations, sync log, metadata.
#[derive(Debug)]
#[must_use = "the connection closes when dropped"]
pub struct UserDb {
    db: Db,
}

impl UserDb {
    /// The database name of `user`.
    pub fn name_for(user: &str) -> String {
        format!("crm-sync:{user}")
    }

    /// Opens (creating or upgrading) the database of `user`.
    ///
    /// # Errors
    /// As [`Db::open`].
    pub async fn open(user: &str) -> Result<UserDb, Error> {
        Self::open_with(user, OpenOptions::default()).await
    }

    /// [`UserDb::open`] with other timeouts.
    ///
    /// # Errors
    /// As [`Db::open`].
    pub async fn open_with(user: &str, options: OpenOptions) -> Result<UserDb, Error> {
        let db = Db::open(&Self::name_for(user), USER_SCHEMA, options).await?;
        Ok(UserDb { db })
    }

    /// Whether the user's database holds work not on the server (outbox,
    /// dead letters, conflicts), as [`crate::core::login::holds_work`]
    /// decides.
    pub async fn holds_work(user: &str) -> bool {
        let Ok(db) = UserDb::open(user).await else {
            return crate::core::login::holds_work(None);
        };
        let mut counts = Vec::new();
        for store in [Store::Outbox, Store::Failed, Store::Conflicts] {
            match db.all::<serde::de::IgnoredAny>(store).await {
                Ok(entries) => counts.push(entries.len()),
                Err(_) => break,
            }
        }
        db.close();
        crate::core::login::holds_work((counts.len() == 3).then_some(&counts[..]))
    }

    /// Deletes the database of `user` (logout). Open connections, in this
    /// tab and others, close themselves and report
    /// [`CloseReason::VersionChange`] with `new_version: None`.
    ///
    /// # Errors
    /// As [`Db::delete_database`].
    pub async fn delete_user(user: &str, timeout_ms: u32) -> Result<(), Error> {
        Db::delete_database(&Self::name_for(user), timeout_ms).await
    }

    /// The connection, for JS-valued reads and writes and
    /// [`Db::read_modify_write`].
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// See [`Db::on_close`].
    pub fn on_close(&self, callback: impl FnOnce(CloseReason) + 'static) {
        self.db.on_close(callback);
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.db.close();
    }

    /// The value under `key`, read with serde.
    ///
    /// # Errors
    /// As [`Db::get`]; [`Error::Storage`] for a stored value that does not
    /// fit `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        store: Store,
        key: &str,
    ) -> Result<Option<T>, Error> {
        match self.db.get(store.name(), key).await? {
            Some(value) => read(store, key, value).map(Some),
            None => Ok(None),
        }
    }

    /// Writes one value (serialised to plain objects).
    ///
    /// # Errors
    /// As [`Db::write`].
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        store: Store,
        key: &str,
        value: &T,
    ) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put(store, key, value)?;
        self.db.write(&batch).await
    }

    /// Deletes one value (nothing if absent).
    ///
    /// # Errors
    /// As [`Db::write`].
    pub async fn delete(&self, store: Store, key: &str) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(store, key);
        self.db.write(&batch).await
    }

    /// Every `(key, value)` of a store, in key order.
    ///
    /// # Errors
    /// As [`UserDb::get`].
    pub async fn all<T: DeserializeOwned>(&self, store: Store) -> Result<Vec<(String, T)>, Error> {
        self.read_entries(store, None).await
    }

    /// The `(key, value)`s whose key starts with `prefix`, e.g. one
    /// collection's records with `record_key(collection, "")`.
    ///
    /// # Errors
    /// As [`UserDb::get`].
    pub async fn all_with_prefix<T: DeserializeOwned>(
        &self,
        store: Store,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, Error> {
        self.read_entries(store, Some(prefix)).await
    }

    async fn read_entries<T: DeserializeOwned>(
        &self,
        store: Store,
        prefix: Option<&str>,
    ) -> Result<Vec<(String, T)>, Error> {
        self.db
            .entries(store.name(), prefix)
            .await?
            .into_iter()
            .map(|(key, value)| {
                let value = read(store, &key, value)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Every key of a store, in key order.
    ///
    /// # Errors
    /// As [`Db::keys`].
    pub async fn keys(&self, store: Store) -> Result<Vec<String>, Error> {
        self.db.keys(store.name()).await
    }

    /// Writes a batch atomically, e.g. an outbox entry with its staged
    /// record. See [`Db::write`].
    ///
    /// # Errors
    /// As [`Db::write`].
    pub async fn write_batch(&self, batch: &Batch) -> Result<(), Error> {
        self.db.write(batch).await
    }
}

fn read<T: DeserializeOwned>(store: Store, key: &str, value: JsValue) -> Result<T, Error> {
    crate::web::de::from_js(value)
        .map_err(|e| Error::Storage(format!("unreadable {} entry {key:?}: {e}", store.name())))
}
