//! Where the state lives for a command: the configured backend (local
//! file or pg) and workspace, opened on first use; and the commands that
//! manage them: `init [--migrate-state]`, `workspace ...`, `state pull`
//! and `state push`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use miette::{Diagnostic, IntoDiagnostic, WrapErr};
use mirrorplan_config::BackendBlock;
use mirrorplan_state::{
    current_workspace, decode_state, encode_state, select_workspace, Backend, BackendError,
    HeldLock, LocalBackend, LockInfo, LockRequest, PushOutcome, SaveOutcome, State,
    DEFAULT_WORKSPACE, WORKSPACE_ENV,
};
use mirrorplan_state_pg::{PgBackend, PgSettings};

use crate::cli::{StateArgs, WorkspaceCommand};

/// A backend error as a [`Diagnostic`] (so that `miette::Report::new` and
/// `to_string` work as for the state crate's own errors).
pub struct StoreError(BackendError);

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Diagnostic for StoreError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.code()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.help()
    }
    fn severity(&self) -> Option<miette::Severity> {
        self.0.severity()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.url()
    }
}

impl From<BackendError> for StoreError {
    fn from(e: BackendError) -> Self {
        StoreError(e)
    }
}

/// A problem with how the backend is configured (block, flags).
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(mirrorplan::backend::config))]
struct BackendConfigError {
    message: String,
    #[help]
    help: String,
}

fn config_error(message: impl Into<String>, help: impl Into<String>) -> StoreError {
    StoreError(Box::new(BackendConfigError {
        message: message.into(),
        help: help.into(),
    }))
}

/// The state of one command: the configured backend and the selected
/// workspace, connected on first use (so that a command that never
/// touches the state never connects).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    state_file: Option<PathBuf>,
    backend_config: Vec<String>,
    /// `None`: read the block from the configuration directory.
    block: Option<Option<BackendBlock>>,
    workspace: Option<String>,
    open: Mutex<Option<Arc<dyn Backend>>>,
}

/// A held state lock; released on drop.
pub type Lock = Box<dyn HeldLock>;

impl Store {
    /// The store for `dir` and these flags; `block` is the configuration's
    /// backend block when the configuration was already loaded.
    pub fn new(dir: &Path, args: &StateArgs, block: Option<Option<BackendBlock>>) -> Store {
        Store {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                state_file: args.state.clone(),
                backend_config: args.backend_config.clone(),
                block,
                workspace: None,
                open: Mutex::new(None),
            }),
        }
    }

    /// The same configuration's store for workspace `name`.
    fn for_workspace(&self, name: &str) -> Store {
        Store {
            inner: Arc::new(Inner {
                dir: self.inner.dir.clone(),
                state_file: self.inner.state_file.clone(),
                backend_config: self.inner.backend_config.clone(),
                block: self.inner.block.clone(),
                workspace: Some(name.to_owned()),
                open: Mutex::new(None),
            }),
        }
    }

    fn block(&self) -> Result<Option<BackendBlock>, StoreError> {
        match &self.inner.block {
            Some(b) => Ok(b.clone()),
            None => mirrorplan_config::backend_of_dir(&self.inner.dir).map_err(|diags| {
                let text: Vec<String> = diags
                    .iter()
                    .map(|d| match d.location() {
                        Some(at) => format!("{at}: {}", d.message),
                        None => d.message.clone(),
                    })
                    .collect();
                config_error(
                    format!(
                        "the backend configuration is invalid:\n  {}",
                        text.join("\n  ")
                    ),
                    "run `mirrorplan validate` for the details",
                )
            }),
        }
    }

    /// The configuration directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The workspace this store reads and writes.
    pub fn workspace(&self) -> Result<String, StoreError> {
        match &self.inner.workspace {
            Some(w) => Ok(w.clone()),
            None => Ok(current_workspace(&self.inner.dir)?),
        }
    }

    /// The backend, connected.
    pub fn backend(&self) -> Result<Arc<dyn Backend>, StoreError> {
        let mut open = self.inner.open.lock().map_err(|_| {
            config_error("internal error: backend lock poisoned", "report this bug")
        })?;
        if let Some(b) = open.as_ref() {
            return Ok(b.clone());
        }
        let b = self.connect()?;
        *open = Some(b.clone());
        Ok(b)
    }

    fn connect(&self) -> Result<Arc<dyn Backend>, StoreError> {
        let block = self.block()?;
        let workspace = self.workspace()?;
        let pg = block.as_ref().filter(|b| b.kind == "pg");
        let Some(pg) = pg else {
            if !self.inner.backend_config.is_empty() {
                return Err(config_error(
                    "--backend-config is only for the pg backend, and this configuration uses the local backend",
                    "add `mirrorplan { backend \"pg\" { ... } }` to the configuration, or drop --backend-config",
                ));
            }
            return Ok(match &self.inner.state_file {
                Some(file) => {
                    if workspace != DEFAULT_WORKSPACE {
                        return Err(config_error(
                            format!(
                                "--state names one file, but workspace `{workspace}` is selected"
                            ),
                            "select the default workspace, or drop --state",
                        ));
                    }
                    Arc::new(LocalBackend::with_file(&self.inner.dir, file))
                }
                None => Arc::new(LocalBackend::new(&self.inner.dir, &workspace)?),
            });
        };
        if self.inner.state_file.is_some() {
            return Err(config_error(
                format!(
                    "--state is for the local backend, but {} configures the pg backend",
                    pg.location
                ),
                "drop --state (use `mirrorplan state pull` / `state push` to move a state file)",
            ));
        }
        let mut overrides = Vec::new();
        for kv in &self.inner.backend_config {
            let Some((k, v)) = kv.split_once('=') else {
                // the value is not echoed: it may be a password
                return Err(config_error(
                    "pg backend: --backend-config needs KEY=VALUE",
                    "e.g. --backend-config schema_name=staging or --backend-config sslrootcert=/etc/ssl/db-ca.pem",
                ));
            };
            overrides.push((k.trim().to_owned(), v.to_owned()));
        }
        let settings =
            PgSettings::resolve(&pg.settings, &|name| std::env::var(name).ok(), &overrides)
                .map_err(|e| StoreError(Box::new(e)))?;
        Ok(Arc::new(PgBackend::connect(settings, &workspace)?))
    }

    /// Where the state is, for messages.
    pub fn location(&self) -> String {
        match self.backend() {
            Ok(b) => b.location(),
            Err(_) => self.inner.dir.display().to_string(),
        }
    }

    /// Loads the state; `Ok(None)` if there is none yet.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        Ok(self.backend()?.load()?)
    }

    /// Loads the state, or a new (unsaved) one.
    pub fn load_or_new(&self) -> Result<State, StoreError> {
        Ok(self.load()?.unwrap_or_default())
    }

    /// Saves (compare-and-swap on lineage and serial).
    pub fn save(&self, state: &mut State) -> Result<SaveOutcome, StoreError> {
        Ok(self.backend()?.save(state)?)
    }

    /// [`Backend::save_moved_on`]: the save at the end of an apply.
    pub fn save_moved_on(
        &self,
        state: &mut State,
        plan_serial: u64,
    ) -> Result<SaveOutcome, StoreError> {
        Ok(self.backend()?.save_moved_on(state, plan_serial)?)
    }

    /// [`Backend::check_writable`].
    pub fn check_writable(&self, state: &State) -> Result<(), StoreError> {
        Ok(self.backend()?.check_writable(state)?)
    }

    /// Every workspace of the backend, sorted, `default` included.
    pub fn workspaces(&self) -> miette::Result<Vec<String>> {
        self.backend()
            .map_err(report)?
            .workspaces()
            .map_err(|e| report(e.into()))
    }

    /// Takes the workspace's lock.
    pub fn lock(&self, request: LockRequest) -> Result<Lock, StoreError> {
        Ok(self.backend()?.lock(request)?)
    }

    /// Clears a dead run's lock.
    pub fn force_unlock(&self, id: &str) -> Result<LockInfo, StoreError> {
        Ok(self.backend()?.force_unlock(id)?)
    }
}

fn report(e: StoreError) -> miette::Report {
    miette::Report::new(e)
}

fn take_lock(store: &Store, args: &StateArgs, operation: &str) -> miette::Result<Option<Lock>> {
    if !args.lock {
        return Ok(None);
    }
    store
        .lock(LockRequest::new(operation, args.lock_timeout))
        .map(Some)
        .map_err(report)
}

/// `mirrorplan state pull`: the whole state, as stored, on stdout.
pub fn pull(dir: &Path, args: &StateArgs) -> miette::Result<ExitCode> {
    let store = Store::new(dir, args, None);
    let Some(state) = store.load().map_err(report)? else {
        return Err(miette::miette!(
            code = "mirrorplan::state::none",
            help = "run `mirrorplan apply` first, or select another workspace",
            "there is no state in {}",
            store.location()
        ));
    };
    let bytes = encode_state(&state).map_err(miette::Report::new)?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&bytes)
        .into_diagnostic()
        .wrap_err("cannot write the state to standard output")?;
    Ok(ExitCode::SUCCESS)
}

/// `mirrorplan state push FILE [--force]`
pub fn push(dir: &Path, file: &Path, force: bool, args: &StateArgs) -> miette::Result<ExitCode> {
    let bytes = if file == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
            .into_diagnostic()
            .wrap_err("cannot read the state from standard input")?;
        b
    } else {
        std::fs::read(file)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read the state file {}", file.display()))?
    };
    let state = decode_state(&bytes, file).map_err(miette::Report::new)?;
    let store = Store::new(dir, args, None);
    let _lock = take_lock(&store, args, "state push")?;
    let backend = store.backend().map_err(report)?;
    match backend.push(&state, force).map_err(|e| report(e.into()))? {
        PushOutcome::Written => println!(
            "Pushed {} (lineage {}, serial {}) to {}.",
            file.display(),
            state.lineage(),
            state.serial(),
            backend.location()
        ),
        PushOutcome::Unchanged => println!(
            "{} already holds this state (serial {}); nothing was written.",
            backend.location(),
            state.serial()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `mirrorplan init [--migrate-state]`
pub fn init(dir: &Path, migrate: bool, args: &StateArgs) -> miette::Result<ExitCode> {
    let store = Store::new(dir, args, None);
    let block = store.block().map_err(report)?;
    let is_pg = block.as_ref().is_some_and(|b| b.kind == "pg");
    let backend = store.backend().map_err(report)?;
    let local = LocalBackend::new(dir, DEFAULT_WORKSPACE).map_err(|e| report(e.into()))?;
    let local_names = local.workspaces().map_err(|e| report(e.into()))?;
    let mut local_states = Vec::new();
    for name in &local_names {
        let ws = local.select(name).map_err(|e| report(e.into()))?;
        // an unreadable local state matters only when it is to be migrated
        let loaded = match ws.load() {
            Ok(s) => s,
            Err(e) if migrate => return Err(report(e.into())),
            Err(_) => None,
        };
        if let Some(s) = loaded {
            local_states.push((name.clone(), ws.location(), s));
        }
    }
    if !is_pg {
        if migrate {
            return Err(miette::miette!(
                code = "mirrorplan::init::nothing_to_migrate",
                help = "add `mirrorplan { backend \"pg\" { ... } }` to the configuration first",
                "the configuration uses the local backend: there is no other backend to migrate the state to"
            ));
        }
        println!(
            "mirrorplan is using the local backend ({}).",
            backend.location()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("Initialised the pg backend: {}.", backend.location());
    if !migrate {
        if !local_states.is_empty() {
            let names: Vec<&str> = local_states.iter().map(|(n, _, _)| n.as_str()).collect();
            eprintln!(
                "\nNote: local states exist for workspace(s) {}; they are not used with the pg backend. \
                 Run `mirrorplan init --migrate-state` to copy them.",
                names.join(", ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if local_states.is_empty() {
        println!("No local state to migrate.");
        return Ok(ExitCode::SUCCESS);
    }
    for (name, from, state) in &local_states {
        let target = backend.select(name).map_err(|e| report(e.into()))?;
        let _lock = if args.lock {
            Some(
                target
                    .lock(LockRequest::new("init --migrate-state", args.lock_timeout))
                    .map_err(|e| report(e.into()))?,
            )
        } else {
            None
        };
        match target.push(state, false).map_err(|e| report(e.into()))? {
            PushOutcome::Written => println!(
                "Copied workspace \"{name}\" from {from} (lineage {}, serial {}).",
                state.lineage(),
                state.serial()
            ),
            PushOutcome::Unchanged => println!(
                "Workspace \"{name}\" is already in the pg backend (serial {}).",
                state.serial()
            ),
        }
    }
    println!(
        "\nThe local state files were left in place as a backup; mirrorplan no longer reads them."
    );
    Ok(ExitCode::SUCCESS)
}

/// `mirrorplan workspace list|show|new|select|delete`
pub fn workspace(dir: &Path, command: &WorkspaceCommand) -> miette::Result<ExitCode> {
    match command {
        WorkspaceCommand::Show { state } => {
            let store = Store::new(dir, &state.unlocked(), None);
            println!("{}", store.workspace().map_err(report)?);
        }
        WorkspaceCommand::List { state } => {
            let store = Store::new(dir, &state.unlocked(), None);
            let current = store.workspace().map_err(report)?;
            let names = store.workspaces()?;
            for n in names {
                let mark = if n == current { "*" } else { " " };
                println!("{mark} {n}");
            }
        }
        WorkspaceCommand::New { name, state } => {
            mirrorplan_state::check_workspace_name(name).map_err(miette::Report::new)?;
            let store = Store::new(dir, state, None);
            let names = store.workspaces()?;
            if names.contains(name) {
                return Err(miette::miette!(
                    code = "mirrorplan::workspace::exists",
                    help = format!("select it with `mirrorplan workspace select {name}`"),
                    "workspace \"{name}\" already exists"
                ));
            }
            let ws = store.for_workspace(name);
            let _lock = take_lock(&ws, state, "workspace new")?;
            let mut s = State::new();
            ws.save(&mut s).map_err(report)?;
            select_workspace(dir, name).map_err(|e| report(e.into()))?;
            println!("Created and switched to workspace \"{name}\".");
            env_note();
        }
        WorkspaceCommand::Select { name, state } => {
            mirrorplan_state::check_workspace_name(name).map_err(miette::Report::new)?;
            let store = Store::new(dir, state, None);
            let names = store.workspaces()?;
            if !names.contains(name) {
                return Err(miette::miette!(
                    code = "mirrorplan::workspace::unknown",
                    help = format!(
                        "the workspaces are {}; create one with `mirrorplan workspace new {name}`",
                        names.join(", ")
                    ),
                    "workspace \"{name}\" does not exist"
                ));
            }
            select_workspace(dir, name).map_err(|e| report(e.into()))?;
            println!("Switched to workspace \"{name}\".");
            env_note();
        }
        WorkspaceCommand::Delete { name, force, state } => {
            mirrorplan_state::check_workspace_name(name).map_err(miette::Report::new)?;
            let store = Store::new(dir, state, None);
            if name == DEFAULT_WORKSPACE {
                return Err(miette::miette!(
                    code = "mirrorplan::workspace::delete_default",
                    help = "the default workspace always exists; `mirrorplan destroy` empties it",
                    "cannot delete the default workspace"
                ));
            }
            if *name == store.workspace().map_err(report)? {
                return Err(miette::miette!(
                    code = "mirrorplan::workspace::delete_current",
                    help = "select another workspace first: `mirrorplan workspace select default`",
                    "cannot delete the selected workspace \"{name}\""
                ));
            }
            let backend = store.backend().map_err(report)?;
            if !backend
                .workspaces()
                .map_err(|e| report(e.into()))?
                .contains(name)
            {
                return Err(miette::miette!(
                    code = "mirrorplan::workspace::unknown",
                    help = "list them with `mirrorplan workspace list`",
                    "workspace \"{name}\" does not exist"
                ));
            }
            let ws = store.for_workspace(name);
            let _lock = take_lock(&ws, state, "workspace delete")?;
            if let Some(s) = ws.load().map_err(report)? {
                let n = s.instances().len();
                if n > 0 && !force {
                    return Err(miette::miette!(
                        code = "mirrorplan::workspace::not_empty",
                        help = format!(
                            "run `MIRRORPLAN_WORKSPACE={name} mirrorplan destroy` first, or pass --force to forget them (nothing is destroyed)"
                        ),
                        "workspace \"{name}\" is not empty: its state records {n} instance(s)"
                    ));
                }
            }
            backend
                .delete_workspace(name)
                .map_err(|e| report(e.into()))?;
            println!("Deleted workspace \"{name}\".");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn env_note() {
    if std::env::var(WORKSPACE_ENV).is_ok_and(|v| !v.is_empty()) {
        eprintln!("Note: {WORKSPACE_ENV} is set and overrides the selected workspace.");
    }
}
