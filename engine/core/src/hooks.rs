//! Progress hooks, interruption and the context handed to a provider's apply.
//!
//! Like OpenTofu's `PreApply`/`PostApply` hooks, the engine never prints: it
//! calls [`Hooks`] and the binary decides what to show. [`Interrupt`] carries
//! the user's Ctrl-C presses: level 1 = stop starting work, level 2 = abort.

use std::sync::Arc;

use tokio::sync::watch;

use crate::address::Address;
use crate::plan::Action;

/// One progress report from a provider during apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A short human message, e.g. "uploading layer 3/7".
    Message(String),
    /// Bytes transferred so far, and the total when known.
    Bytes {
        /// Bytes done.
        done: u64,
        /// Total bytes, if known.
        total: Option<u64>,
    },
}

/// Observer of the engine's work. Every method has an empty default; calls
/// may come from several instances concurrently.
pub trait Hooks: Send + Sync {
    /// A refresh read of `address` starts.
    fn pre_refresh(&self, _address: &Address) {}
    /// A refresh read ended; `Ok(exists)` or the provider's error message.
    fn post_refresh(&self, _address: &Address, _outcome: Result<bool, &str>) {}
    /// Applying `action` to `address` starts.
    fn pre_apply(&self, _address: &Address, _action: Action) {}
    /// A provider reports progress while applying `address`.
    fn progress(&self, _address: &Address, _progress: &Progress) {}
    /// Applying `address` ended; `Err` carries the failure message.
    fn post_apply(&self, _address: &Address, _action: Action, _outcome: Result<(), &str>) {}
}

/// Hooks that ignore everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// A shared interruption signal with two levels. Cloning shares the signal.
///
/// - level 1 (first Ctrl-C): the walk starts nothing new and waits for the
///   running instances;
/// - level 2 (second Ctrl-C): running provider futures are dropped.
#[derive(Debug, Clone)]
pub struct Interrupt {
    level: Arc<watch::Sender<u8>>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt {
            level: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl Interrupt {
    /// A fresh signal at level 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the level by one (call it from the signal handler).
    pub fn signal(&self) {
        self.level.send_modify(|l| *l = l.saturating_add(1));
    }

    /// The current level: 0, 1 (stopping) or 2+ (aborting).
    pub fn level(&self) -> u8 {
        *self.level.borrow()
    }

    /// Whether no new work may start.
    pub fn is_stopping(&self) -> bool {
        self.level() >= 1
    }

    /// Whether running work should be abandoned.
    pub fn is_aborting(&self) -> bool {
        self.level() >= 2
    }

    /// Resolves once the level is at least `level`.
    pub async fn reached(&self, level: u8) {
        let mut rx = self.level.subscribe();
        // The sender lives as long as `self`, so `wait_for` cannot fail here;
        // if it ever did, the signal can no longer rise: wait forever.
        if rx.wait_for(|l| *l >= level).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What a provider's `apply` receives besides the change itself.
#[derive(Clone)]
pub struct ApplyContext {
    address: Address,
    hooks: Arc<dyn Hooks>,
    interrupt: Interrupt,
}

impl ApplyContext {
    /// A context for applying `address`.
    pub fn new(address: Address, hooks: Arc<dyn Hooks>, interrupt: Interrupt) -> Self {
        ApplyContext {
            address,
            hooks,
            interrupt,
        }
    }

    /// The same hooks and interrupt for another instance: a provider that
    /// applies several instances in one pass (images of one bundle) reports
    /// each one's progress under its own address.
    pub fn for_address(&self, address: Address) -> ApplyContext {
        ApplyContext {
            address,
            hooks: self.hooks.clone(),
            interrupt: self.interrupt.clone(),
        }
    }

    /// The instance being applied.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Reports a progress message.
    pub fn message(&self, message: impl Into<String>) {
        self.hooks
            .progress(&self.address, &Progress::Message(message.into()));
    }

    /// Reports transferred bytes.
    pub fn bytes(&self, done: u64, total: Option<u64>) {
        self.hooks
            .progress(&self.address, &Progress::Bytes { done, total });
    }

    /// Whether the user asked to abort running work (second interrupt).
    /// Long operations should check this between steps.
    pub fn is_cancelled(&self) -> bool {
        self.interrupt.is_aborting()
    }

    /// Resolves when the user asks to abort running work.
    pub async fn cancelled(&self) {
        self.interrupt.reached(2).await;
    }
}

impl std::fmt::Debug for ApplyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyContext")
            .field("address", &self.address)
            .field("interrupt", &self.interrupt.level())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn interrupt_levels_rise_and_wake_waiters() {
        let i = Interrupt::new();
        assert!(!i.is_stopping());
        let waiter = {
            let i = i.clone();
            tokio::spawn(async move { i.reached(2).await })
        };
        i.signal();
        assert!(i.is_stopping() && !i.is_aborting());
        i.signal();
        assert!(i.is_aborting());
        waiter
            .await
            .expect("waiter finishes once level 2 is reached");
    }
}
