//! Shared folders (virtio-fs, 9p, VSMB): adding and removing them.

use async_trait::async_trait;
use tracing::debug;
use uvm_api::{
    Action, Error, Operation, Removal, Result, ShareKind, SharedFolder, SharedFolderManager,
};

use crate::fake::core::Core;
use crate::fake::fault_point::FaultPoint;
use crate::fake::removal::Unplug;
use crate::fake::state::shares::share_key;

impl Core {
    pub(crate) fn share_add(&self, share: SharedFolder) -> Result<()> {
        let resource = share.kind.resource();
        self.require(resource, Operation::Add)?;
        let mut m = self.lock();
        self.state().check(Action::ChangeDevices)?;
        share.validate()?;
        let key = share_key(share.kind, &share.name);
        if m.shares.shares.contains(&key) {
            return Err(Error::already_exists(resource, share.name));
        }
        self.faults.take(FaultPoint::AddShare)?;
        debug!(kind = %resource, name = %share.name, host_path = %share.host_path.display(),
            read_only = share.read_only, state = %self.state(), "folder shared");
        let name = share.name.clone();
        m.attach(|m| &mut m.shares.shares, key, share, resource, name)
    }

    pub(crate) fn share_remove(&self, kind: ShareKind, name: &str) -> Result<Removal> {
        let unplug = Unplug {
            resource: kind.resource(),
            id: name.to_owned(),
            table: |m| &mut m.shares.shares,
            key: share_key(kind, name),
            fault: FaultPoint::RemoveShare,
        };
        self.unplug(unplug, |_| Ok(()))
    }
}

#[async_trait]
impl SharedFolderManager for Core {
    async fn add_share(&self, share: SharedFolder) -> Result<()> {
        self.traced("shares add_share", async { self.share_add(share) })
            .await
    }

    async fn remove_share(&self, kind: ShareKind, name: &str) -> Result<Removal> {
        self.traced("shares remove_share", async {
            self.share_remove(kind, name)
        })
        .await
    }
}
