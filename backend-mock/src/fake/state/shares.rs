//! Shared folders (virtio-fs, 9p, VSMB).

use uvm_api::{DeviceTable, ShareKind, SharedFolder};

/// Shares are keyed by (kind, name); kinds sort virtio-fs, 9p, VSMB.
pub(crate) type ShareKey = (u8, String);

/// The key of share `name` of kind `kind`.
pub(crate) fn share_key(kind: ShareKind, name: &str) -> ShareKey {
    let rank = match kind {
        ShareKind::VirtioFs => 0,
        ShareKind::Plan9 => 1,
        ShareKind::Vsmb => 2,
    };
    (rank, name.to_owned())
}

/// Shares by (kind, name).
#[derive(Debug, Default)]
pub(crate) struct ShareState {
    pub shares: DeviceTable<ShareKey, SharedFolder>,
}

impl ShareState {
    /// The share the guest mounts as `tag` (first by kind if several kinds use the name).
    pub fn by_tag(&self, tag: &str) -> Option<&SharedFolder> {
        self.shares
            .iter_visible()
            .map(|(_, s)| s)
            .find(|s| s.name == tag)
    }
}
