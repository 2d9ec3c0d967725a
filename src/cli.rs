//! Command-line arguments (clap types only; no work is done here).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Long flags a Terraform user writes with one dash (`-out=FILE`,
/// `-auto-approve`, `-var 'a=b'`, `-lock=false`, ...): they are read as the
/// same flags with two dashes.
const TERRAFORM_STYLE_FLAGS: &[&str] = &[
    "auto-approve",
    "chdir",
    "destroy",
    "detailed-exitcode",
    "json",
    "lock",
    "lock-timeout",
    "migrate-state",
    "no-color",
    "out",
    "parallelism",
    "refresh",
    "refresh-only",
    "replace",
    "state",
    "target",
    "var",
    "var-file",
];

/// The arguments with Terraform-style single-dash long flags
/// ([`TERRAFORM_STYLE_FLAGS`]) given their second dash. Everything after a
/// `--` is left alone.
pub fn terraform_style_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest = false;
    for arg in args {
        let fixed = match arg.to_str() {
            Some("--") => {
                rest = true;
                None
            }
            Some(a) if !rest && a.starts_with('-') && !a.starts_with("--") => {
                let name = a[1..].split('=').next().unwrap_or_default();
                TERRAFORM_STYLE_FLAGS
                    .contains(&name)
                    .then(|| OsString::from(format!("-{a}")))
            }
            _ => None,
        };
        out.push(fixed.unwrap_or(arg));
    }
    out
}

/// Parses the arguments. Help and version go to stdout with exit code 0;
/// every usage error is printed (as JSON on stdout too when `--json` or
/// `--format json` was asked for) and gives exit code 1, never clap's 2,
/// which `--detailed-exitcode` reserves for "changes present".
pub fn parse(args: &[OsString]) -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            };
            if code != ExitCode::SUCCESS && json_asked(args) {
                let message = e.kind().as_str().map_or_else(
                    || e.to_string().lines().next().unwrap_or_default().to_string(),
                    str::to_string,
                );
                crate::output::print_json_errors(&[crate::output::JsonDiagnostic {
                    code: "mirrorplan::cli::usage".into(),
                    message: format!("{message}: {}", e.to_string().trim()),
                    help: Some("run `mirrorplan --help`".into()),
                    file: None,
                    line: None,
                    column: None,
                }]);
            }
            let _ = e.print();
            Err(code)
        }
    }
}

/// Whether the raw arguments ask for JSON output.
fn json_asked(args: &[OsString]) -> bool {
    let mut previous_format = false;
    for a in args.iter().filter_map(|a| a.to_str()) {
        if a == "--json" || a == "--format=json" || (previous_format && a == "json") {
            return true;
        }
        previous_format = a == "--format";
    }
    false
}

/// Declarative plan/apply for container registry mirrors and the containerd
/// configuration of the nodes that pull through them.
#[derive(Debug, Parser)]
#[command(name = "mirrorplan", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Run as if started in DIR (the directory holding the *.hcl files).
    #[arg(short = 'C', long = "chdir", global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Never use colour (also honoured: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Log registry requests and node commands (secrets redacted) at this
    /// level: off, error, warn, info, debug, trace, or TARGET=LEVEL pairs.
    #[arg(long, global = true, env = "MIRRORPLAN_LOG", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Write the log to this file (appended to, created mode 0600) instead
    /// of stderr.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command prints JSON (its errors then go to stdout as
    /// JSON too).
    pub fn wants_json(&self) -> bool {
        match &self.command {
            Command::Validate { json } | Command::Output { json, .. } => *json,
            Command::Plan { args, .. }
            | Command::Apply { args, .. }
            | Command::Destroy { args, .. } => args.format() == Format::Json,
            Command::Show { json, format, .. } => *json || *format == Format::Json,
            Command::Verify(args) => args.json,
            _ => false,
        }
    }
}

/// Variable inputs shared by commands that evaluate the configuration.
#[derive(Debug, Args, Clone, Default)]
pub struct VarArgs {
    /// Set a variable: NAME=VALUE (repeatable; wins over files and environment).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read variable values from an HCL file of `NAME = value` lines (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

/// Where the state lives and how it is locked.
#[derive(Debug, Args, Clone)]
pub struct StateArgs {
    /// State file (default: .mirrorplan/state.json beside the configuration).
    #[arg(long = "state", value_name = "FILE", global = true)]
    pub state: Option<PathBuf>,
    /// Take the state lock (use --lock=false for read-only cron checks).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub lock: bool,
    /// How long to wait for a lock held by another run (e.g. 0s, 30s, 5m).
    #[arg(long, default_value = "0s", value_parser = crate::commands::run::parse_duration, value_name = "DURATION")]
    pub lock_timeout: std::time::Duration,
    /// Set a pg backend setting: conn_str, schema_name or a libpq parameter
    /// such as password or sslrootcert (repeatable; wins over the block and
    /// the PG* variables).
    #[arg(long = "backend-config", value_name = "KEY=VALUE", global = true)]
    pub backend_config: Vec<String>,
}

/// The state file alone, for the commands that only read it (they take no
/// lock, so they offer no lock flags).
#[derive(Debug, Args, Clone)]
pub struct StateFileArgs {
    /// State file (default: .mirrorplan/state.json beside the configuration).
    #[arg(long = "state", value_name = "FILE", global = true)]
    pub state: Option<PathBuf>,
    /// Set a pg backend setting: conn_str, schema_name or a libpq parameter
    /// such as password or sslrootcert (repeatable; wins over the block and
    /// the PG* variables).
    #[arg(long = "backend-config", value_name = "KEY=VALUE", global = true)]
    pub backend_config: Vec<String>,
}

impl StateFileArgs {
    /// The same state, read without a lock.
    pub fn unlocked(&self) -> StateArgs {
        StateArgs {
            state: self.state.clone(),
            lock: false,
            lock_timeout: std::time::Duration::ZERO,
            backend_config: self.backend_config.clone(),
        }
    }
}

/// Flags shared by plan, apply and destroy.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub vars: VarArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Read what really exists before planning (--refresh=false to skip).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub refresh: bool,
    /// Only record reality into state (drift check): set from `plan` and
    /// `apply`'s own `--refresh-only` (`destroy` has none).
    #[arg(skip)]
    pub refresh_only: bool,
    /// Limit to this instance (and what it depends on); repeatable.
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Re-apply this instance even if it already is as configured: push
    /// the image again (every blob), write the node's files again and
    /// restart containerd; repeatable.
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Provider operations run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Print the plan as JSON (format documented in docs/plan-json.md); the same as --format json.
    #[arg(long)]
    pub json: bool,
    /// How to print the plan: human, json, or markdown (for a merge-request comment).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Show every refresh on stderr.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    #[arg(skip)]
    pub destroy: bool,
}

/// How a plan is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Terraform-style text.
    #[default]
    Human,
    /// The versioned JSON of docs/plan-json.md.
    Json,
    /// A compact, collapsible summary for a merge-request comment.
    Markdown,
}

impl PlanArgs {
    /// The chosen format (`--json` is an alias of `--format json`).
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format
        }
    }
}

/// Flags of `mirrorplan verify`.
#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub vars: VarArgs,
    #[command(flatten)]
    pub state: StateFileArgs,
    /// Only this cluster (its name, e.g. admin1).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Only this image set (its name, e.g. anthos).
    #[arg(long = "image-set", value_name = "NAME")]
    pub image_set: Option<String>,
    /// Only this node (host or host:port as written in `nodes`).
    #[arg(long, value_name = "HOST")]
    pub node: Option<String>,
    /// Pull the cluster's image on every SSH node, not only on each cluster's canary.
    #[arg(long, conflicts_with = "no_pull")]
    pub pull: bool,
    /// Pull nothing, not even on the canaries (digest and configuration checks only).
    #[arg(long)]
    pub no_pull: bool,
    /// Print the results as JSON (versioned).
    #[arg(long)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration: syntax, names, references, types, values.
    ///
    /// Needs no variable values and looks at no files, bundles or hosts.
    /// Exit code 0 when valid, 1 with every problem listed otherwise.
    Validate {
        /// Print the diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite configuration files in the canonical format.
    Fmt {
        /// Do not write; list the files that would change and exit 1 if any.
        #[arg(long)]
        check: bool,
        /// Show the changes as a diff.
        #[arg(long)]
        diff: bool,
        /// Files to format (default: every *.hcl file of the directory).
        files: Vec<PathBuf>,
    },
    /// Print the dependency graph in Graphviz DOT.
    Graph {
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Show what apply would change: drift first, then the actions.
    Plan {
        #[command(flatten)]
        args: PlanArgs,
        /// Save the plan to FILE for `mirrorplan apply FILE`.
        #[arg(long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        /// Exit 0 when nothing changes, 1 on error, 2 when there are changes.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Plan to destroy everything mirrorplan manages.
        #[arg(long)]
        destroy: bool,
        /// Only record reality into state (drift check); no changes are proposed.
        #[arg(long)]
        refresh_only: bool,
    },
    /// Make the changes: push images, configure nodes; state saved after each one.
    Apply {
        #[command(flatten)]
        args: PlanArgs,
        /// Skip the interactive approval (required without a terminal).
        #[arg(long)]
        auto_approve: bool,
        /// A plan saved with `plan --out`: apply exactly that.
        plan_file: Option<PathBuf>,
        /// Only record reality into state; no changes are made.
        #[arg(long)]
        refresh_only: bool,
    },
    /// Remove what mirrorplan created on nodes (images stay unless `prune = true`).
    Destroy {
        #[command(flatten)]
        args: PlanArgs,
        /// Skip the interactive approval.
        #[arg(long)]
        auto_approve: bool,
    },
    /// Record an existing object in the state without changing it: an
    /// image already in the mirror, a node configured by hand.
    ///
    /// ADDRESS must be an image or node instance of the configuration that
    /// the state does not record yet. The object is read first; if it
    /// differs from the configuration, the next plan shows the difference.
    Import {
        /// The instance, e.g. 'image.anthos["gcr.io/a/b:1"]' or 'node.edge["local:./n1"]'.
        address: String,
        #[command(flatten)]
        vars: VarArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check that the nodes really pull through the mirror (read-only).
    ///
    /// Method 1: the mirror serves the expected digests, and a CRI pull by
    /// the public name yields them. Method 2: each node's live containerd
    /// configuration lists the mirror, its CA file matches, `config_path`
    /// and legacy `mirrors` are not both set, and the CRI plugin answers.
    ///
    /// Changes nothing, except that it pulls one image into the containerd of
    /// each cluster's canary node (every SSH node with --pull, none with
    /// --no-pull), and says so. Exit 0 when every check passes, 1 otherwise.
    Verify(VerifyArgs),
    /// Show a saved plan, or the state.
    Show {
        /// A plan file from `plan --out`.
        plan_file: Option<PathBuf>,
        /// JSON output (the same as --format json).
        #[arg(long)]
        json: bool,
        /// How to print a plan: human, json, or markdown.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateFileArgs,
    },
    /// Inspect or edit the state.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Print output values from the state.
    Output {
        /// One output.
        name: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateFileArgs,
    },
    /// Remove a lock left by a killed run (check that nothing else runs first).
    ForceUnlock {
        /// The lock id shown in the error.
        id: String,
        #[command(flatten)]
        state: StateFileArgs,
    },
    /// Prepare the configured backend (creates the pg tables on first use).
    Init {
        /// Copy the local state of every workspace into the configured
        /// backend, keeping lineage and serial.
        #[arg(long = "migrate-state")]
        migrate_state: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Manage workspaces: separate states for one configuration.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// `mirrorplan state ...`
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the addresses in the state.
    List {
        #[command(flatten)]
        state: StateFileArgs,
    },
    /// Show one instance.
    Show {
        /// Its address, e.g. 'node.admin1["cp1.example"]'.
        address: String,
        #[command(flatten)]
        state: StateFileArgs,
    },
    /// Forget an instance (nothing is changed on nodes or registries).
    Rm {
        /// Its address.
        address: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Record instances at a new address (nothing is changed on nodes or
    /// registries): a cluster moves with its nodes, an image set with its
    /// images, as a `moved` block would.
    Mv {
        /// The address they are recorded at, e.g. cluster.local.
        from: String,
        /// The new address, e.g. cluster.edge or 'cluster.edge["a"]'.
        to: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print the whole state as JSON, for a backup or a migration (it
    /// includes the private `secret_salt`, which `show --json` leaves out).
    Pull {
        #[command(flatten)]
        state: StateFileArgs,
    },
    /// Replace the stored state with FILE (`-` for standard input): the
    /// lineage must match and the serial must not be older, unless --force.
    Push {
        /// A state file, e.g. from `mirrorplan state pull`.
        file: PathBuf,
        /// Skip the lineage and serial checks.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// `mirrorplan workspace ...`
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// List the workspaces; the selected one is marked with `*`.
    List {
        #[command(flatten)]
        state: StateFileArgs,
    },
    /// Print the selected workspace.
    Show {
        #[command(flatten)]
        state: StateFileArgs,
    },
    /// Create a workspace (with an empty state) and select it.
    New {
        /// Its name: letters, digits, `-` and `_`.
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Select a workspace (remembered in .mirrorplan/environment;
    /// MIRRORPLAN_WORKSPACE overrides it).
    Select {
        /// An existing workspace.
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Delete a workspace's state (refused for the selected one, and for a
    /// state that still records instances unless --force).
    Delete {
        /// The workspace.
        name: String,
        /// Delete even if the state records instances (they are forgotten,
        /// not destroyed).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Shells for completion scripts.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    /// bash
    Bash,
    /// zsh
    Zsh,
    /// fish
    Fish,
}
