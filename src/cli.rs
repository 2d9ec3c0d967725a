//! Command-line arguments (clap types only; no work is done here).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

    #[command(subcommand)]
    pub command: Command,
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
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: Shell,
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
