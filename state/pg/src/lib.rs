//! mirrorplan's PostgreSQL state backend, modelled on Terraform's `pg`
//! backend.
//!
//! # Table layout
//! Created on first use (`CREATE SCHEMA/TABLE IF NOT EXISTS`, serialised by
//! a transaction-level advisory lock) in the configured schema (default
//! `mirrorplan`):
//!
//! ```sql
//! CREATE TABLE states (id bigserial PRIMARY KEY, name text UNIQUE NOT NULL,
//!                      lineage text NOT NULL, serial bigint NOT NULL, data text NOT NULL);
//! CREATE TABLE locks  (name text PRIMARY KEY, info text NOT NULL);
//! ```
//!
//! One `states` row per workspace: `data` is the state JSON exactly as the
//! local file holds it (no secrets: only salted digests), `lineage` and
//! `serial` repeat its fields for compare-and-swap.
//!
//! # Architecture invariants
//! - **Locking.** A session-level `pg_try_advisory_lock(key)` (key derived
//!   from schema and workspace) on a connection of its own, polled until the
//!   lock timeout, held until the command ends. The holder's
//!   [`LockInfo`] is upserted into `locks` so that a waiting run names it. A
//!   holder that dies loses its session and with it the lock; its `locks`
//!   row is then stale and is overwritten by the next holder.
//! - **Compare-and-swap.** A save runs in a transaction: the row is read
//!   `FOR UPDATE`, the state crate's rule ([`next_save`]) decides, and the
//!   `UPDATE` is conditional on the lineage and serial read. A writer whose
//!   state is older than the stored one writes nothing, lock or no lock.
//! - **No password in messages.** Every error text passes through
//!   [`PgSettings::scrub`].
//! - **Blocking API.** The [`Backend`] trait is synchronous (the engine's
//!   state sink is); the backend drives its connections on a runtime of
//!   its own, so it may be called from inside another tokio runtime.

mod error;
mod settings;
mod tls;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mirrorplan_state::{
    check_push, decode_state, next_save, set_saved_serial, Backend, BackendError, HeldLock,
    LockInfo, LockRequest, PushOutcome, SaveOutcome, SaveStep, State, StateError,
    DEFAULT_WORKSPACE,
};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

pub use error::PgError;
pub use settings::{parse_conn_str, PgSettings, SslMode, DEFAULT_SCHEMA};

/// How often a waiting lock request tries again.
const LOCK_POLL: Duration = Duration::from_millis(200);
/// Advisory lock key that serialises creating the tables.
const CREATE_KEY: i64 = 0x6d69_7272_6f72_706c; // "mirrorpl"

/// The connections and runtime shared by every workspace of one backend.
struct Shared {
    settings: PgSettings,
    rt: Option<tokio::runtime::Runtime>,
    data: Arc<tokio::sync::Mutex<Client>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // may be dropped inside another runtime: do not block
            rt.shutdown_background();
        }
    }
}

impl Shared {
    /// Runs `fut` on the backend's runtime and waits for it (from any
    /// thread, inside another runtime or not).
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, BackendError>> + Send + 'static,
    ) -> Result<T, BackendError> {
        let Some(rt) = &self.rt else {
            return Err(self.query_error("run", "the backend was shut down".into()));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(self.query_error("run", "the backend task stopped".into())))
    }

    fn query_error(&self, what: &'static str, detail: String) -> BackendError {
        Box::new(PgError::Query {
            target: self.settings.target(),
            what,
            detail: self.settings.scrub(&detail),
        })
    }
}

/// The text of a client error: the server's message, or the client's
/// reason with its causes.
fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Opens one connection; its driver task runs on the current runtime.
async fn connect(settings: &PgSettings) -> Result<Client, BackendError> {
    let config = settings.client_config();
    let fail = |e: tokio_postgres::Error| -> BackendError {
        Box::new(PgError::Connect {
            target: settings.target(),
            detail: settings.scrub(&error_text(&e)),
        })
    };
    match tls::client_config(settings)? {
        None => {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(fail)?;
            tokio::spawn(conn);
            Ok(client)
        }
        Some(tls) => {
            let (client, conn) = config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await
                .map_err(fail)?;
            tokio::spawn(conn);
            Ok(client)
        }
    }
}

/// A PostgreSQL backend bound to one workspace.
#[derive(Clone)]
pub struct PgBackend {
    shared: Arc<Shared>,
    workspace: String,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("settings", &self.shared.settings)
            .field("workspace", &self.workspace)
            .finish()
    }
}

impl PgBackend {
    /// Connects, creates the schema and tables if missing, and binds the
    /// backend to `workspace`.
    pub fn connect(settings: PgSettings, workspace: &str) -> Result<PgBackend, BackendError> {
        mirrorplan_state::check_workspace_name(workspace)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mirrorplan-pg")
            .enable_all()
            .build()
            .map_err(|e| PgError::Connect {
                target: settings.target(),
                detail: format!("cannot start the client runtime: {e}"),
            })?;
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = settings.clone();
        rt.spawn(async move {
            let r = async {
                let client = connect(&s2).await?;
                create_tables(&client, &s2).await?;
                Ok::<_, BackendError>(client)
            }
            .await;
            let _ = tx.send(r);
        });
        let client = match rx.recv() {
            Ok(r) => r,
            Err(_) => Err(Box::new(PgError::Connect {
                target: settings.target(),
                detail: "the connection task stopped".into(),
            }) as BackendError),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                rt.shutdown_background();
                return Err(e);
            }
        };
        Ok(PgBackend {
            shared: Arc::new(Shared {
                settings,
                rt: Some(rt),
                data: Arc::new(tokio::sync::Mutex::new(client)),
            }),
            workspace: workspace.to_owned(),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &PgSettings {
        &self.shared.settings
    }

    fn location_path(&self) -> PathBuf {
        PathBuf::from(self.location())
    }

    fn states(&self) -> String {
        format!("{}.states", self.shared.settings.quoted_schema())
    }

    fn locks(&self) -> String {
        format!("{}.locks", self.shared.settings.quoted_schema())
    }

    /// The advisory lock key of this workspace.
    fn lock_key(&self) -> i64 {
        let digest = Sha256::new()
            .chain_update(self.shared.settings.schema().as_bytes())
            .chain_update([0u8])
            .chain_update(self.workspace.as_bytes())
            .finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(b)
    }
}

async fn create_tables(client: &Client, settings: &PgSettings) -> Result<(), BackendError> {
    let schema = settings.quoted_schema();
    let fail = |what: &'static str| {
        move |e: tokio_postgres::Error| -> BackendError {
            Box::new(PgError::Query {
                target: settings.target(),
                what,
                detail: settings.scrub(&error_text(&e)),
            })
        }
    };
    let present: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
            &[&format!("{schema}.states"), &format!("{schema}.locks")],
        )
        .await
        .map_err(fail("look for the state tables"))?
        .get(0);
    if present {
        return Ok(());
    }
    client
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({CREATE_KEY});
             CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.states (
                 id bigserial PRIMARY KEY,
                 name text UNIQUE NOT NULL,
                 lineage text NOT NULL,
                 serial bigint NOT NULL,
                 data text NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {schema}.locks (
                 name text PRIMARY KEY,
                 info text NOT NULL
             );
             COMMIT;"
        ))
        .await
        .map_err(fail("create the state tables"))
}

fn to_i64(serial: u64) -> Result<i64, BackendError> {
    i64::try_from(serial).map_err(|_| {
        Box::new(PgError::Config {
            detail: format!("serial {serial} does not fit PostgreSQL's bigint"),
        }) as BackendError
    })
}

/// A stored row: lineage and serial columns.
fn head(location: &str, lineage: &str, serial: i64) -> Result<(uuid::Uuid, u64), BackendError> {
    let corrupt = |detail: String| -> BackendError {
        Box::new(PgError::Corrupt {
            location: location.to_owned(),
            detail,
        })
    };
    let lineage = lineage
        .parse()
        .map_err(|_| corrupt(format!("the lineage column `{lineage}` is not a UUID")))?;
    let serial =
        u64::try_from(serial).map_err(|_| corrupt(format!("the serial column is {serial}")))?;
    Ok((lineage, serial))
}

impl PgBackend {
    /// The compare-and-swap save of [`Backend::save`] (`plan_serial`:
    /// [`Backend::save_moved_on`]).
    fn save_step(
        &self,
        state: &mut State,
        plan_serial: Option<u64>,
    ) -> Result<SaveOutcome, BackendError> {
        let data = self.shared.data.clone();
        let states = self.states();
        let ws = self.workspace.clone();
        let shared = self.shared.clone();
        let location = self.location();
        let path = self.location_path();
        let mut st = state.clone();
        let (outcome, st) = self.shared.run(async move {
            let mut client = data.lock().await;
            let q = |what: &'static str| {
                let shared = shared.clone();
                move |e: tokio_postgres::Error| shared.query_error(what, error_text(&e))
            };
            let tx = client.transaction().await.map_err(q("begin a transaction"))?;
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT lineage, serial, sha256(convert_to(data, 'UTF8')) FROM {states} \
                         WHERE name = $1 FOR UPDATE"
                    ),
                    &[&ws],
                )
                .await
                .map_err(q("read the stored state"))?;
            let stored = match &row {
                None => None,
                Some(r) => {
                    let (lineage, serial): (String, i64) = (r.get(0), r.get(1));
                    Some(head(&location, &lineage, serial)?)
                }
            };
            let digest: Option<Vec<u8>> = row.as_ref().map(|r| r.get(2));
            let step = next_save(stored, &mut st, &path, plan_serial, |bytes| {
                digest.as_deref() == Some(Sha256::digest(bytes).as_slice())
            })?;
            let (serial, bytes) = match step {
                SaveStep::Unchanged { serial } => {
                    tx.rollback().await.map_err(q("end the transaction"))?;
                    return Ok((SaveOutcome::Unchanged { serial }, st));
                }
                SaveStep::Write { serial, bytes } => (serial, bytes),
            };
            let text = String::from_utf8(bytes).map_err(|e| shared.query_error("encode", e.to_string()))?;
            let lineage = st.lineage().to_string();
            let n = match stored {
                None => tx
                    .execute(
                        &format!(
                            "INSERT INTO {states} (name, lineage, serial, data) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (name) DO NOTHING"
                        ),
                        &[&ws, &lineage, &to_i64(serial)?, &text],
                    )
                    .await
                    .map_err(q("write the state"))?,
                Some((old_lineage, old_serial)) => tx
                    .execute(
                        &format!(
                            "UPDATE {states} SET lineage = $2, serial = $3, data = $4 \
                             WHERE name = $1 AND lineage = $5 AND serial = $6"
                        ),
                        &[
                            &ws,
                            &lineage,
                            &to_i64(serial)?,
                            &text,
                            &old_lineage.to_string(),
                            &to_i64(old_serial)?,
                        ],
                    )
                    .await
                    .map_err(q("write the state"))?,
            };
            if n != 1 {
                tx.rollback().await.map_err(q("end the transaction"))?;
                return Err(Box::new(StateError::SerialConflict {
                    path: path.clone(),
                    on_disk: stored.map_or(0, |(_, s)| s) + 1,
                    ours: st.serial(),
                }) as BackendError);
            }
            tx.commit().await.map_err(q("commit the state"))?;
            set_saved_serial(&mut st, serial);
            Ok((
                match stored {
                    None => SaveOutcome::Created { serial },
                    Some((_, previous_serial)) => SaveOutcome::Updated {
                        previous_serial,
                        serial,
                    },
                },
                st,
            ))
        })?;
        set_saved_serial(state, st.serial());
        Ok(outcome)
    }
}

impl Backend for PgBackend {
    fn workspace(&self) -> &str {
        &self.workspace
    }

    fn location(&self) -> String {
        format!(
            "pg state \"{}\" ({}.states at {})",
            self.workspace,
            self.shared.settings.schema(),
            self.shared.settings.target()
        )
    }

    fn load(&self) -> Result<Option<State>, BackendError> {
        let data = self.shared.data.clone();
        let sql = format!(
            "SELECT lineage, serial, data FROM {} WHERE name = $1",
            self.states()
        );
        let ws = self.workspace.clone();
        let shared = self.shared.clone();
        let row = self.shared.run(async move {
            let client = data.lock().await;
            client
                .query_opt(&sql, &[&ws])
                .await
                .map_err(|e| shared.query_error("read the state", error_text(&e)))
        })?;
        let Some(row) = row else { return Ok(None) };
        let (lineage, serial): (String, i64) = (row.get(0), row.get(1));
        let text: String = row.get(2);
        let location = self.location();
        let (lineage, serial) = head(&location, &lineage, serial)?;
        let state = decode_state(text.as_bytes(), &self.location_path())?;
        if state.lineage() != lineage || state.serial() != serial {
            return Err(Box::new(PgError::Corrupt {
                location,
                detail: format!(
                    "its columns say lineage {lineage} serial {serial}, its data lineage {} serial {}",
                    state.lineage(),
                    state.serial()
                ),
            }));
        }
        Ok(Some(state))
    }

    fn save(&self, state: &mut State) -> Result<SaveOutcome, BackendError> {
        self.save_step(state, None)
    }

    fn save_moved_on(
        &self,
        state: &mut State,
        plan_serial: u64,
    ) -> Result<SaveOutcome, BackendError> {
        self.save_step(state, Some(plan_serial))
    }

    fn push(&self, state: &State, force: bool) -> Result<PushOutcome, BackendError> {
        let stored = match self.load() {
            Ok(s) => s,
            Err(_) if force => None,
            Err(e) => return Err(e),
        };
        if !check_push(stored.as_ref(), state, force, &self.location())? {
            return Ok(PushOutcome::Unchanged);
        }
        let text = String::from_utf8(mirrorplan_state::encode_state(state)?)
            .map_err(|e| self.shared.query_error("encode", e.to_string()))?;
        let data = self.shared.data.clone();
        let sql = format!(
            "INSERT INTO {} (name, lineage, serial, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET lineage = $2, serial = $3, data = $4",
            self.states()
        );
        let ws = self.workspace.clone();
        let lineage = state.lineage().to_string();
        let serial = to_i64(state.serial())?;
        let shared = self.shared.clone();
        self.shared.run(async move {
            let client = data.lock().await;
            client
                .execute(&sql, &[&ws, &lineage, &serial, &text])
                .await
                .map_err(|e| shared.query_error("write the state", error_text(&e)))
        })?;
        Ok(PushOutcome::Written)
    }

    fn lock(&self, request: LockRequest) -> Result<Box<dyn HeldLock>, BackendError> {
        let settings = self.shared.settings.clone();
        let key = self.lock_key();
        let locks = self.locks();
        let ws = self.workspace.clone();
        let path = self.location_path();
        let shared = self.shared.clone();
        let (client, info) = self.shared.run(async move {
            let client = connect(&settings).await?;
            let q = |what: &'static str| {
                let shared = shared.clone();
                move |e: tokio_postgres::Error| shared.query_error(what, error_text(&e))
            };
            let deadline = Instant::now().checked_add(request.timeout);
            loop {
                let got: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                    .await
                    .map_err(q("take the advisory lock"))?
                    .get(0);
                if got {
                    let info = LockInfo::for_this_process(&request.operation);
                    let json = serde_json::to_string(&info).map_err(StateError::Serialize)?;
                    // a row left by a holder that died is overwritten
                    client
                        .execute(
                            &format!(
                                "INSERT INTO {locks} (name, info) VALUES ($1, $2) \
                                 ON CONFLICT (name) DO UPDATE SET info = $2"
                            ),
                            &[&ws, &json],
                        )
                        .await
                        .map_err(q("record the lock holder"))?;
                    return Ok((client, info));
                }
                let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if remaining.is_some_and(|r| r.is_zero()) {
                    let holder = read_holder(&client, &locks, &ws).await;
                    return Err(Box::new(StateError::Locked {
                        path: path.clone(),
                        holder: holder.map(Box::new),
                    }) as BackendError);
                }
                tokio::time::sleep(remaining.map_or(LOCK_POLL, |r| r.min(LOCK_POLL))).await;
            }
        })?;
        Ok(Box::new(PgLock {
            shared: self.shared.clone(),
            client: Some(client),
            key,
            locks: self.locks(),
            workspace: self.workspace.clone(),
            info,
        }))
    }

    fn force_unlock(&self, id: &str) -> Result<LockInfo, BackendError> {
        let settings = self.shared.settings.clone();
        let key = self.lock_key();
        let locks = self.locks();
        let ws = self.workspace.clone();
        let path = self.location_path();
        let shared = self.shared.clone();
        let id = id.trim().to_owned();
        self.shared.run(async move {
            let client = connect(&settings).await?;
            let q = |what: &'static str| {
                let shared = shared.clone();
                move |e: tokio_postgres::Error| shared.query_error(what, error_text(&e))
            };
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(q("take the advisory lock"))?
                .get(0);
            let holder = read_holder(&client, &locks, &ws).await;
            if !got {
                return Err(Box::new(StateError::LockHeld {
                    path,
                    holder: holder.map(Box::new),
                }) as BackendError);
            }
            let result = match holder {
                None => Err(Box::new(StateError::NotLocked { path }) as BackendError),
                Some(info) if info.id != id => Err(Box::new(StateError::LockIdMismatch {
                    path,
                    given: id,
                    holder: Box::new(info),
                }) as BackendError),
                Some(info) => {
                    client
                        .execute(&format!("DELETE FROM {locks} WHERE name = $1"), &[&ws])
                        .await
                        .map_err(q("remove the lock record"))?;
                    Ok(info)
                }
            };
            // the session ends with `client`: the advisory lock goes with it
            result
        })
    }

    fn workspaces(&self) -> Result<Vec<String>, BackendError> {
        let data = self.shared.data.clone();
        let sql = format!("SELECT name FROM {} ORDER BY name", self.states());
        let shared = self.shared.clone();
        let mut names: Vec<String> = self.shared.run(async move {
            let client = data.lock().await;
            let rows = client
                .query(&sql, &[])
                .await
                .map_err(|e| shared.query_error("list the workspaces", error_text(&e)))?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })?;
        names.push(DEFAULT_WORKSPACE.to_owned());
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn delete_workspace(&self, name: &str) -> Result<(), BackendError> {
        mirrorplan_state::check_workspace_name(name)?;
        let data = self.shared.data.clone();
        let sql = format!("DELETE FROM {} WHERE name = $1", self.states());
        let shared = self.shared.clone();
        let name = name.to_owned();
        self.shared.run(async move {
            let client = data.lock().await;
            client
                .execute(&sql, &[&name])
                .await
                .map_err(|e| shared.query_error("delete the workspace", error_text(&e)))?;
            Ok(())
        })
    }

    fn select(&self, name: &str) -> Result<Box<dyn Backend>, BackendError> {
        mirrorplan_state::check_workspace_name(name)?;
        Ok(Box::new(PgBackend {
            shared: self.shared.clone(),
            workspace: name.to_owned(),
        }))
    }
}

/// The recorded holder of a workspace's lock, if readable.
async fn read_holder(client: &Client, locks: &str, ws: &str) -> Option<LockInfo> {
    let row = client
        .query_opt(&format!("SELECT info FROM {locks} WHERE name = $1"), &[&ws])
        .await
        .ok()??;
    serde_json::from_str(&row.get::<_, String>(0)).ok()
}

/// A held advisory lock: its own session. Dropping it removes the lock
/// record and unlocks; if that fails, closing the session unlocks anyway.
struct PgLock {
    shared: Arc<Shared>,
    client: Option<Client>,
    key: i64,
    locks: String,
    workspace: String,
    info: LockInfo,
}

impl std::fmt::Debug for PgLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLock")
            .field("workspace", &self.workspace)
            .field("info", &self.info)
            .finish()
    }
}

impl HeldLock for PgLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for PgLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let sql = format!("DELETE FROM {} WHERE name = $1 AND info = $2", self.locks);
        let ws = self.workspace.clone();
        let key = self.key;
        let info = serde_json::to_string(&self.info).unwrap_or_default();
        let _ = self.shared.run(async move {
            let _ = client.execute(&sql, &[&ws, &info]).await;
            let _ = client
                .query_one("SELECT pg_advisory_unlock($1)", &[&key])
                .await;
            drop(client);
            Ok(())
        });
    }
}
