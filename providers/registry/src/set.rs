//! The `image_set` provider: one instance per image set, `image_set.NAME`,
//! applied after every image of the set. It changes nothing anywhere; it
//! gives the plan one line per set (how many images, blobs and bytes) and
//! gives nodes a single thing to wait for instead of every image, which
//! keeps the dependency graph and the state small for large bundles.

use std::collections::BTreeMap;

use async_trait::async_trait;
use mirrorplan_engine::{
    Address, ApplyContext, Attrs, DesiredInstance, NewInstanceState, Observed, PlannedChange,
    PriorInstance, Provider, ProviderError,
};

/// The provider kind.
pub const KIND: &str = "image_set";

/// The desired instance of a set of `images` images totalling `blobs` blobs and `bytes` bytes.
pub fn set_desired(address: Address, images: u64, images_addrs: Vec<Address>) -> DesiredInstance {
    let mut d = DesiredInstance::new(address, KIND, Attrs::new().with("images", images));
    d.dependencies = images_addrs;
    d
}

/// A barrier per image set: nothing to read, nothing to write.
#[derive(Debug, Default)]
pub struct ImageSetProvider;

#[async_trait]
impl Provider for ImageSetProvider {
    fn kind(&self) -> &str {
        KIND
    }

    async fn read(
        &self,
        _desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
    ) -> Result<Option<Observed>, ProviderError> {
        Ok(prior.map(|_| Observed::default()))
    }

    fn plan(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
        observed: Option<&Observed>,
    ) -> Result<PlannedChange, ProviderError> {
        let _ = observed;
        mirrorplan_engine::diff(self.force_new(), desired, prior)
    }

    async fn apply(
        &self,
        change: &PlannedChange,
        _ctx: &ApplyContext,
    ) -> Result<Option<NewInstanceState>, ProviderError> {
        Ok(change.after.clone().map(|attrs| NewInstanceState {
            attrs,
            digests: BTreeMap::new(),
        }))
    }
}
