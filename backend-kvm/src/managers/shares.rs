//! [`KvmShares`]: shared folders as virtio-fs functions, each served by its
//! own `virtiofsd` over vhost-user.
//!
//! Adding a share starts `virtiofsd` on the folder (`--readonly` for a
//! read-only share) with its socket in the VM's runtime directory, connects
//! a [`VhostUserFs`] device to it and plugs that in the first free slot of
//! [`slots::DYNAMIC`]; the share's name is the virtio-fs tag (at most 36
//! bytes). With `allowed_files`, the daemon serves a private staging
//! directory holding hard links to exactly those files (so the guest sees
//! only them, and writes to them reach the host files); files that do not
//! exist are left out. Symbolic links inside the share are never followed
//! while staging: an allowed file whose path inside the share goes through
//! a link (a directory or the file itself) is refused with
//! `InvalidArgument` (argument `allowed_files`) naming the link, so a link
//! cannot expose host files outside the share (`nofollow`). When the guest has ejected the device the daemon is
//! stopped and the staging directory removed.
//!
//! Only virtio-fs: Plan9 and VSMB answer `NotSupported`. Without a
//! `virtiofsd` binary ([`find_virtiofsd`](uvm_devices::virtio::fs::find_virtiofsd)) virtio-fs is not supported
//! either, and `supported(VirtioFs, ..)` says so.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use parking_lot::Mutex;
use tracing::Instrument;
use uvm_api::{
    DeviceTable, Error, Operation, Removal, Resource, Result, ShareKind, SharedFolder,
    SharedFolderManager, op_span,
};
use uvm_devices::virtio::fs::{FsError, TAG_LEN, VhostUserFs, VirtiofsdProcess};

mod nofollow;

use self::nofollow::{Linked, NoFollowError, link_file};
use super::context::ManagerContext;
use super::removal::Unplug;
use crate::pci::slots;

/// Size of each virtio-fs queue.
const QUEUE_SIZE: u16 = 256;

struct Served {
    slot: u8,
    _daemon: VirtiofsdProcess,
    _staging: Option<tempfile::TempDir>,
}

/// The shared-folder manager of one VM.
pub struct KvmShares {
    ctx: ManagerContext,
    virtiofsd: Option<PathBuf>,
    runtime_dir: OnceLock<tempfile::TempDir>,
    shares: Arc<Mutex<Shares>>,
}

/// The shares of a VM by name.
type Shares = DeviceTable<String, Served>;

fn fs_error(share: &SharedFolder, e: FsError) -> Error {
    match e {
        FsError::TagEmpty | FsError::TagTooLong { .. } | FsError::TagHasNul => {
            Error::invalid_argument("name", format!("{:?}: {e}", share.name))
        }
        other => Error::backend(other),
    }
}

/// A directory holding hard links to the `allowed` files of `root`.
fn staging(root: &Path, allowed: &[String], parent: &Path) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("share-")
        .tempdir_in(parent)
        .map_err(|e| Error::io("creating a share staging directory", e))?;
    for name in allowed {
        let target = dir.path().join(name);
        match link_file(root, name, &target) {
            Ok(Linked::Linked) => {}
            Ok(Linked::Skipped) => {
                tracing::debug!(file = %root.join(name).display(), "allowed file absent or not a regular file; not shown");
            }
            Err(e @ (NoFollowError::Symlink(_) | NoFollowError::BadName(_))) => {
                tracing::warn!("allowed file {name:?} refused: {e}");
                return Err(Error::invalid_argument("allowed_files", e.to_string()));
            }
            Err(NoFollowError::Io { path, source }) => {
                return Err(Error::io(
                    format!(
                        "linking allowed file {} into the share's view (it must be on the same file system as the VM's runtime directory)",
                        path.display()
                    ),
                    source,
                ));
            }
        }
    }
    Ok(dir)
}

impl KvmShares {
    /// The manager for the VM of `ctx`; `virtiofsd` is the daemon binary,
    /// if there is one.
    pub fn new(ctx: ManagerContext, virtiofsd: Option<PathBuf>) -> Self {
        KvmShares {
            ctx,
            virtiofsd,
            runtime_dir: OnceLock::new(),
            shares: Arc::new(Mutex::new(DeviceTable::default())),
        }
    }

    /// Whether virtio-fs shares can be served.
    pub fn available(&self) -> bool {
        self.virtiofsd.is_some()
    }

    fn runtime_dir(&self) -> Result<&Path> {
        if let Some(dir) = self.runtime_dir.get() {
            return Ok(dir.path());
        }
        let dir = tempfile::Builder::new()
            .prefix("uvm-kvm-")
            .tempdir()
            .map_err(|e| Error::io("creating the VM's runtime directory", e))?;
        Ok(self.runtime_dir.get_or_init(|| dir).path())
    }

    fn binary(&self, kind: ShareKind, operation: Operation) -> Result<&Path> {
        match (kind, self.virtiofsd.as_deref()) {
            (ShareKind::VirtioFs, Some(binary)) => Ok(binary),
            _ => Err(Error::not_supported(kind.resource(), operation)),
        }
    }

    pub(crate) fn do_add_share(&self, share: SharedFolder) -> Result<()> {
        let binary = self.binary(share.kind, Operation::Add)?.to_path_buf();
        self.ctx.check_state()?;
        share.validate()?;
        if share.name.len() > TAG_LEN {
            return Err(Error::invalid_argument(
                "name",
                format!("virtio-fs tags are at most {TAG_LEN} bytes"),
            ));
        }
        if self.shares.lock().contains(&share.name) {
            return Err(Error::already_exists(
                Resource::VirtioFs,
                share.name.clone(),
            ));
        }
        let runtime = self.runtime_dir()?.to_path_buf();
        let staged = if share.allowed_files.is_empty() {
            None
        } else {
            Some(staging(&share.host_path, &share.allowed_files, &runtime)?)
        };
        let served_dir = staged
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_else(|| share.host_path.clone());
        let socket = runtime.join(format!("fs-{}.sock", hex_name(&share.name)));
        let daemon = VirtiofsdProcess::spawn(&binary, &served_dir, &socket, share.read_only)
            .map_err(|e| fs_error(&share, e))?;
        let device = VhostUserFs::connect(&socket, &share.name, 1, QUEUE_SIZE)
            .map_err(|e| fs_error(&share, e))?;
        let slot = self
            .ctx
            .hub
            .reserve_slot(slots::DYNAMIC)
            .map_err(|e| self.ctx.hub_error(Resource::VirtioFs, e))?;
        let served = Served {
            slot,
            _daemon: daemon,
            _staging: staged,
        };
        if self
            .shares
            .lock()
            .insert(share.name.clone(), served)
            .is_err()
        {
            self.ctx.hub.unreserve(slot);
            return Err(Error::already_exists(
                Resource::VirtioFs,
                share.name.clone(),
            ));
        }
        let plugged = self.ctx.hub.plug(
            slot,
            &format!("virtio-fs {}", share.name),
            Box::new(device),
            None,
        );
        if let Err(e) = plugged {
            self.shares.lock().take_attached(&share.name);
            return Err(self.ctx.hub_error(Resource::VirtioFs, e));
        }
        tracing::info!(vm = %self.ctx.vm_id, name = %share.name, host_path = %share.host_path.display(),
            read_only = share.read_only, allowed = share.allowed_files.len(), slot, "share added");
        Ok(())
    }

    fn do_remove_share(&self, kind: ShareKind, name: &str) -> Result<Removal> {
        self.binary(kind, Operation::Remove)?;
        self.ctx.check_state()?;
        let key = name.to_owned();
        let Some(slot) = self.shares.lock().attached(&key).map(|s| s.slot) else {
            return Err(Error::not_found(Resource::VirtioFs, name));
        };
        Unplug {
            resource: Resource::VirtioFs,
            table: |t: &mut Shares| t,
            released: |_: &mut Shares, _: &Served| {},
        }
        .start(&self.shares, key, name, || {
            self.ctx
                .hub
                .unplug(slot)
                .map_err(|e| self.ctx.hub_error(Resource::VirtioFs, e))
        })
    }

    /// The VM stopped: daemons stop, pending removals complete.
    pub fn shut_down(&self) {
        let drained = self.shares.lock().drain();
        drained.complete();
    }
}

/// A file-name-safe form of a share name.
fn hex_name(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl SharedFolderManager for KvmShares {
    async fn add_share(&self, share: SharedFolder) -> Result<()> {
        let span = op_span(&self.ctx.vm_id, "shares add_share");
        async { self.do_add_share(share) }.instrument(span).await
    }

    async fn remove_share(&self, kind: ShareKind, name: &str) -> Result<Removal> {
        let span = op_span(&self.ctx.vm_id, "shares remove_share");
        async { self.do_remove_share(kind, name) }
            .instrument(span)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_links_only_the_allowed_files_that_exist() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.txt"), b"a").unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/b.txt"), b"b").unwrap();
        std::fs::write(root.path().join("hidden"), b"h").unwrap();
        let parent = tempfile::tempdir_in(root.path()).unwrap();
        let allowed = vec!["a.txt".into(), "sub/b.txt".into(), "missing".into()];
        let dir = staging(root.path(), &allowed, parent.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"a");
        assert_eq!(std::fs::read(dir.path().join("sub/b.txt")).unwrap(), b"b");
        assert!(!dir.path().join("hidden").exists());
        assert!(!dir.path().join("missing").exists());
        // Writes through the link reach the host file.
        std::fs::write(dir.path().join("a.txt"), b"new").unwrap();
        assert_eq!(std::fs::read(root.path().join("a.txt")).unwrap(), b"new");
    }

    /// A share whose `link` is a symlink to a directory outside it, and
    /// whose `alias` is a symlink to a file outside it.
    fn share_with_links() -> (tempfile::TempDir, tempfile::TempDir) {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("alias"))
            .unwrap();
        (root, outside)
    }

    #[test]
    fn staging_refuses_a_symlinked_directory_in_the_share() {
        let (root, _outside) = share_with_links();
        let parent = tempfile::tempdir().unwrap();
        let r = staging(root.path(), &["link/secret".into()], parent.path());
        let Err(err) = r else {
            panic!("a file behind a symlink was staged")
        };
        assert!(
            matches!(&err, Error::InvalidArgument { argument, reason }
                if argument == "allowed_files" && reason.contains(&*root.path().join("link").to_string_lossy())),
            "{err:?}"
        );
    }

    #[test]
    fn staging_refuses_a_symlinked_file_in_the_share() {
        let (root, _outside) = share_with_links();
        let parent = tempfile::tempdir().unwrap();
        let r = staging(root.path(), &["alias".into()], parent.path());
        let Err(err) = r else {
            panic!("a file behind a symlink was staged")
        };
        assert!(
            matches!(&err, Error::InvalidArgument { argument, .. } if argument == "allowed_files"),
            "{err:?}"
        );
    }

    #[test]
    fn hex_names_are_file_name_safe() {
        assert_eq!(hex_name("a/b"), "612f62");
    }
}
