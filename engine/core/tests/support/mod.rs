//! Test support: an in-memory provider whose "world" is a map, with knobs
//! for failures, unreachable reads, interrupts and concurrency accounting.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mirrorplan_engine::{
    diff, Action, Address, ApplyContext, Attrs, DesiredInstance, InstanceRecord, Interrupt,
    NewInstanceState, Observed, PlannedChange, PriorInstance, PriorSnapshot, Provider,
    ProviderError,
};

pub const LINEAGE: &str = "00000000-0000-4000-8000-000000000001";
pub const SALT: &str = "test-salt";

pub fn addr(text: &str) -> Address {
    text.parse().expect("test addresses are valid")
}

/// A state record for `attrs`, as mirrorplan would have written it.
pub fn record(attrs: &Attrs, deps: &[&str]) -> InstanceRecord {
    InstanceRecord {
        provider: "mem".into(),
        attributes: attrs.public_values(),
        sensitive: attrs.sensitive_digests(SALT),
        dependencies: deps.iter().map(|d| d.to_string()).collect(),
        digests: BTreeMap::new(),
    }
}

pub fn desired(address: &str, attrs: Attrs, deps: &[&str]) -> DesiredInstance {
    let mut d = DesiredInstance::new(addr(address), "mem", attrs);
    d.dependencies = deps.iter().map(|a| addr(a)).collect();
    d
}

/// What the interrupt knob does when an instance's apply starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnStart {
    /// Raise the interrupt level once, then finish normally.
    SignalOnce,
    /// Raise it twice, then never finish (the engine must drop the future).
    SignalTwiceAndHang,
}

#[derive(Default)]
pub struct MemProvider {
    /// What really exists.
    pub world: Mutex<BTreeMap<Address, Attrs>>,
    /// `start X` / `end X` / `read X` events in order.
    pub events: Arc<Mutex<Vec<String>>>,
    /// Apply of these fails.
    pub fail: BTreeSet<Address>,
    /// Read of these fails as unreachable.
    pub unreachable: BTreeSet<Address>,
    /// An unreachable read lets the plan go on (`allow_plan_unread`).
    pub plan_unread: bool,
    /// Interrupt behaviour per instance.
    pub on_start: BTreeMap<Address, OnStart>,
    pub interrupt: Interrupt,
    /// Clear `after` values the provider received at apply.
    pub received: Mutex<Vec<Attrs>>,
    pub current: AtomicUsize,
    pub max: AtomicUsize,
    pub sleep: Option<Duration>,
    /// Adopt what exists as planned (see `Provider::adopt`).
    pub adopt: bool,
}

impl MemProvider {
    pub fn with_world(world: &[(&str, Attrs)]) -> Self {
        let p = MemProvider::default();
        {
            let mut w = p.world.lock().expect("lock");
            for (a, attrs) in world {
                w.insert(addr(a), attrs.clone());
            }
        }
        p
    }

    pub fn log(&self, line: String) {
        self.events.lock().expect("lock").push(line);
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().expect("lock").clone()
    }

    pub fn position(&self, event: &str) -> usize {
        self.events()
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("no event `{event}` in {:?}", self.events()))
    }

    fn enter(&self) {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.current.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Provider for MemProvider {
    fn kind(&self) -> &str {
        "mem"
    }

    fn force_new(&self) -> &[&str] {
        &["host"]
    }

    /// The `physical` attribute, when an instance has one.
    fn physical_identity(&self, attrs: &BTreeMap<String, serde_json::Value>) -> Option<String> {
        attrs.get("physical")?.as_str().map(str::to_string)
    }

    async fn read(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
    ) -> Result<Option<Observed>, ProviderError> {
        let address = desired
            .map(|d| &d.address)
            .or(prior.map(|p| &p.address))
            .ok_or_else(|| ProviderError::invalid_input("nothing to read"))?;
        self.enter();
        if let Some(d) = self.sleep {
            tokio::time::sleep(d).await;
        }
        self.leave();
        self.log(format!("read {address}"));
        if self.unreachable.contains(address) {
            let e = ProviderError::unreachable(format!("{address}: connection refused"));
            return Err(if self.plan_unread {
                e.allow_plan_unread("apply will try it")
            } else {
                e
            });
        }
        let found = self.world.lock().expect("lock").get(address).cloned();
        Ok(found.map(|attrs| Observed { attrs }))
    }

    fn plan(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
        _observed: Option<&Observed>,
    ) -> Result<PlannedChange, ProviderError> {
        let mut change = diff(self.force_new(), desired, prior)?;
        if change.action == Action::Create {
            if let Some(n) = desired
                .and_then(|d| d.attrs.get("blobs"))
                .and_then(|b| b.as_u64())
            {
                change
                    .details
                    .push(format!("{n} blobs to upload (12 MiB), 2 to mount"));
            }
        }
        Ok(change)
    }

    fn adopt(
        &self,
        _desired: &DesiredInstance,
        planned: &PlannedChange,
        observed: &Observed,
    ) -> Option<mirrorplan_engine::Adoption> {
        let after = planned.after.as_ref()?;
        (self.adopt && mirrorplan_engine::observed_matches(after, observed)).then(|| {
            mirrorplan_engine::Adoption {
                state: NewInstanceState {
                    attrs: after.clone(),
                    digests: BTreeMap::new(),
                },
                details: vec!["already there".into()],
            }
        })
    }

    async fn apply(
        &self,
        change: &PlannedChange,
        ctx: &ApplyContext,
    ) -> Result<Option<NewInstanceState>, ProviderError> {
        let address = &change.address;
        self.log(format!("start {address}"));
        if let Some(h) = &change.handover {
            self.log(format!("handover {address} to {}", h.address));
        }
        self.enter();
        match self.on_start.get(address) {
            Some(OnStart::SignalOnce) => self.interrupt.signal(),
            Some(OnStart::SignalTwiceAndHang) => {
                self.interrupt.signal();
                self.interrupt.signal();
                ctx.cancelled().await;
                std::future::pending::<()>().await;
            }
            None => {}
        }
        ctx.message("working");
        if let Some(d) = self.sleep {
            tokio::time::sleep(d).await;
        } else {
            tokio::task::yield_now().await;
        }
        self.leave();
        self.log(format!("end {address}"));
        if self.fail.contains(address) {
            return Err(ProviderError::failed("registry said 500"));
        }
        let mut world = self.world.lock().expect("lock");
        match (&change.action, &change.after) {
            (Action::Delete, _) | (_, None) => {
                world.remove(address);
                Ok(None)
            }
            (_, Some(after)) => {
                self.received.lock().expect("lock").push(after.clone());
                world.insert(address.clone(), after.clone());
                Ok(Some(NewInstanceState {
                    attrs: after.clone(),
                    digests: BTreeMap::new(),
                }))
            }
        }
    }
}

/// A snapshot of the given state records.
pub fn snapshot(serial: u64, records: &[(&str, InstanceRecord)]) -> PriorSnapshot {
    let mut s = PriorSnapshot::new(LINEAGE, serial, SALT);
    for (a, r) in records {
        s.instances.insert(addr(a), r.clone());
    }
    s
}

/// The identity of the tests' state (its lineage and salt key plan files).
pub fn ident() -> mirrorplan_engine::StateIdentity {
    snapshot(0, &[]).identity
}

/// Replaces every `blake3:<64 hex>` (and `blake3-keyed:<64 hex>`) with
/// `blake3:[digest]` (`blake3-keyed:[digest]`).
pub fn redact_digests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("blake3") {
        let tail = &rest[i + 6..];
        let marker = if tail.starts_with("-keyed:") {
            13
        } else if tail.starts_with(':') {
            7
        } else {
            6
        };
        out.push_str(&rest[..i + marker]);
        let after = &rest[i + marker..];
        let hex = after.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        if marker > 6 && hex == 64 {
            out.push_str("[digest]");
            rest = &after[64..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// What an apply saved, by address.
pub type Saved = Arc<Mutex<BTreeMap<Address, InstanceRecord>>>;

/// Applies a fresh plan, saving into `saved` and logging `saved X` events.
pub async fn apply(
    engine: &mirrorplan_engine::Engine,
    plan: &mirrorplan_engine::Plan,
    provider: &MemProvider,
    prior: &PriorSnapshot,
    saved: &Saved,
) -> mirrorplan_engine::ApplyReport {
    let events = provider.events.clone();
    let saved = saved.clone();
    let mut sink = move |a: &Address,
                         r: Option<&InstanceRecord>|
          -> Result<(), mirrorplan_engine::SinkError> {
        events.lock().expect("lock").push(format!("saved {a}"));
        let mut s = saved.lock().expect("lock");
        match r {
            Some(r) => s.insert(a.clone(), r.clone()),
            None => s.remove(a),
        };
        Ok(())
    };
    engine
        .apply(
            plan,
            mirrorplan_engine::ApplyRequest {
                state: prior.identity.clone(),
                desired: None,
                sink: &mut sink,
                interrupt: provider.interrupt.clone(),
            },
        )
        .await
        .expect("apply starts")
}
