//! SIGINT and SIGTERM, for every command.
//!
//! [`install`] runs first in `main`: from then on both signals reach one
//! thread of their own. By default a signal ends the process at once, after
//! removing the lock info of every state lock it holds
//! ([`mirrorplan_state::release_held_locks_before_exit`]; the kernel frees
//! the flock at exit), so no signal leaves a stale lock. The exit code is
//! the shell's: 130 for SIGINT, 143 for SIGTERM.
//!
//! While `apply` walks its plan it [`divert`]s the signals instead: each
//! one raises the walk's `Interrupt` (the first stops new work, the
//! second abandons the running work), and the walk ends normally, saving the
//! state and releasing the lock itself.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::signal::unix::{signal, SignalKind};

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal number, as a shell reports a process it killed.
    fn exit_code(self) -> i32 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

type Handler = Arc<dyn Fn(Signal) + Send + Sync>;

/// The handler of a diverting command, if any.
static DIVERTED: Mutex<Option<Handler>> = Mutex::new(None);

fn diverted() -> MutexGuard<'static, Option<Handler>> {
    DIVERTED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts handling SIGINT and SIGTERM (see the module docs). The handlers
/// are registered before this returns, so no signal is missed; if they
/// cannot be (no runtime), the default actions stay.
pub fn install() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let registered = {
        let _entered = rt.enter();
        signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)))
    };
    let Ok((mut int, mut term)) = registered else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                loop {
                    let sig = tokio::select! {
                        Some(()) = int.recv() => Signal::Interrupt,
                        Some(()) = term.recv() => Signal::Terminate,
                        else => return,
                    };
                    dispatch(sig);
                }
            });
        });
    // without the thread the signals would be caught and ignored
    if spawned.is_err() {
        eprintln!("mirrorplan: cannot start the signal thread; a signal may leave a stale lock");
    }
}

fn dispatch(sig: Signal) {
    let handler = diverted().clone();
    match handler {
        Some(handler) => handler(sig),
        None => {
            let released = mirrorplan_state::release_held_locks_before_exit();
            if released > 0 {
                eprintln!(
                    "\nmirrorplan: stopped by {}; the state lock was released.",
                    sig.name()
                );
            } else {
                eprintln!("\nmirrorplan: stopped by {}.", sig.name());
            }
            std::process::exit(sig.exit_code());
        }
    }
}

/// While the returned guard lives, signals go to `handler` instead of
/// ending the process.
pub fn divert(handler: impl Fn(Signal) + Send + Sync + 'static) -> Diverted {
    *diverted() = Some(Arc::new(handler));
    Diverted(())
}

/// Signals end the process again once this is dropped.
#[must_use = "signals are diverted only while the guard lives"]
pub struct Diverted(());

impl Drop for Diverted {
    fn drop(&mut self) {
        *diverted() = None;
    }
}
