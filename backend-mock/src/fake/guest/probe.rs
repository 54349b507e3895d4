//! The simulated guest, seen from inside through [`GuestProbe`].
//!
//! It answers only while the VM runs (a paused guest answers nothing, a
//! stopped one is gone): otherwise every call is `InvalidState`. Its disks
//! and shares are the real host files, so what the host writes the guest
//! reads, and the other way round.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tracing::debug;
use uvm_api::{
    Error, ExitStatus, GuestAction, GuestBlockDevice, GuestNic, GuestPmem, GuestProbe, GuestShare,
    Result, State, StopReason,
};

use super::share_files::ShareFiles;
use super::view::{GuestView, guest_view};
use crate::fake::core::{Core, blocking};

/// Where a block request goes: the disk's table key, host file and size.
struct BlockTarget {
    key: (u8, u8),
    path: PathBuf,
}

fn read_at(path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_at(path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(data)?;
    file.sync_data()
}

impl Core {
    /// The guest's view, checking it runs.
    fn running_view(&self, operation: &str) -> Result<GuestView> {
        let m = self.lock();
        self.check_running(operation)?;
        Ok(guest_view(&m, State::Running))
    }

    /// Finds block device `name` and checks `offset..offset+len` is inside it.
    fn block_target(
        &self,
        operation: &str,
        name: &str,
        offset: u64,
        len: u64,
        write: bool,
    ) -> Result<BlockTarget> {
        let m = self.lock();
        self.check_running(operation)?;
        let Some((key, disk)) = m.scsi.disks.iter_visible().find(|(_, d)| d.name == name) else {
            return Err(Error::io(
                format!("opening /dev/{name}"),
                io::Error::new(io::ErrorKind::NotFound, "no such block device"),
            ));
        };
        if write && disk.spec.read_only {
            return Err(Error::io(
                format!("writing /dev/{name}"),
                io::Error::new(io::ErrorKind::PermissionDenied, "read-only block device"),
            ));
        }
        if offset.checked_add(len).is_none_or(|end| end > disk.size) {
            return Err(Error::invalid_argument(
                "offset",
                format!(
                    "{len} bytes at {offset} run past the end of {name} ({} bytes)",
                    disk.size
                ),
            ));
        }
        Ok(BlockTarget {
            key: *key,
            path: disk.spec.path.clone(),
        })
    }

    /// Counts a completed guest request on disk `key`.
    fn count_block_io(&self, key: (u8, u8), read: u64, written: u64) {
        let mut m = self.lock();
        if let Some(disk) = m.scsi.disks.visible_mut(&key) {
            disk.read_bytes += read;
            disk.write_bytes += written;
            disk.requests += 1;
        }
    }

    /// The guest's files of share `tag`, checking it runs.
    fn share_files(&self, operation: &str, tag: &str) -> Result<ShareFiles> {
        let m = self.lock();
        self.check_running(operation)?;
        m.shares
            .by_tag(tag)
            .map(|share| ShareFiles {
                share: share.clone(),
            })
            .ok_or_else(|| {
                Error::io(
                    format!("mounting share {tag}"),
                    io::Error::new(io::ErrorKind::NotFound, "no share with this tag"),
                )
            })
    }

    /// `InvalidState` unless the guest runs (a paused guest answers nothing).
    fn check_running(&self, operation: &str) -> Result<()> {
        let state = self.state();
        if state == State::Running {
            Ok(())
        } else {
            Err(Error::InvalidState {
                operation: operation.to_owned(),
                state,
            })
        }
    }
}

#[async_trait]
impl GuestProbe for Core {
    async fn block_devices(&self) -> Result<Vec<GuestBlockDevice>> {
        self.traced("probe block_devices", async {
            Ok(self.running_view("list guest block devices")?.block_devices)
        })
        .await
    }

    async fn read_block(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.traced("probe read_block", async {
            let target =
                self.block_target("read a guest block device", name, offset, len, false)?;
            let len = usize::try_from(len)
                .map_err(|_| Error::invalid_argument("len", format!("{len} is too large")))?;
            let path = target.path.clone();
            let data = blocking(move || {
                read_at(&path, offset, len)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))
            })
            .await?;
            self.count_block_io(target.key, data.len() as u64, 0);
            debug!(name, offset, len, "guest read block device");
            Ok(data)
        })
        .await
    }

    async fn write_block(&self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        self.traced("probe write_block", async {
            let len = data.len() as u64;
            let target =
                self.block_target("write a guest block device", name, offset, len, true)?;
            let path = target.path.clone();
            let bytes = data.to_vec();
            blocking(move || {
                write_at(&path, offset, &bytes)
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))
            })
            .await?;
            self.count_block_io(target.key, 0, len);
            debug!(name, offset, len, "guest wrote block device");
            Ok(())
        })
        .await
    }

    async fn network_interfaces(&self) -> Result<Vec<GuestNic>> {
        self.traced("probe network_interfaces", async {
            Ok(self.running_view("list guest network interfaces")?.nics)
        })
        .await
    }

    async fn pmem_devices(&self) -> Result<Vec<GuestPmem>> {
        self.traced("probe pmem_devices", async {
            Ok(self.running_view("list guest pmem devices")?.pmem_devices)
        })
        .await
    }

    async fn shares(&self) -> Result<Vec<GuestShare>> {
        self.traced("probe shares", async {
            Ok(self.running_view("list guest shares")?.shares)
        })
        .await
    }

    async fn list_share(&self, tag: &str) -> Result<Vec<String>> {
        self.traced("probe list_share", async {
            let files = self.share_files("list a guest share", tag)?;
            blocking(move || files.list()).await
        })
        .await
    }

    async fn read_share_file(&self, tag: &str, path: &str) -> Result<Vec<u8>> {
        self.traced("probe read_share_file", async {
            let files = self.share_files("read a guest share file", tag)?;
            let path = path.to_owned();
            blocking(move || files.read(&path)).await
        })
        .await
    }

    async fn write_share_file(&self, tag: &str, path: &str, data: &[u8]) -> Result<()> {
        self.traced("probe write_share_file", async {
            let files = self.share_files("write a guest share file", tag)?;
            let (path, data) = (path.to_owned(), data.to_vec());
            blocking(move || files.write(&path, &data)).await
        })
        .await
    }

    async fn dial_host(&self, port: u32, payload: &[u8]) -> Result<Vec<u8>> {
        self.traced("probe dial_host", async {
            self.check_running("dial the host from the guest")?;
            self.guest_dial(port, payload).await
        })
        .await
    }

    async fn serve_echo(&self, port: u32) -> Result<()> {
        self.traced("probe serve_echo", async {
            self.check_running("listen in the guest")?;
            self.guest_serve_echo(port)
        })
        .await
    }

    async fn uptime(&self) -> Result<Duration> {
        self.traced("probe uptime", async {
            let m = self.lock();
            self.check_running("read the guest uptime")?;
            // Guest time does not advance while the VM is paused.
            Ok(m.clock.running(Instant::now()))
        })
        .await
    }

    async fn trigger(&self, action: GuestAction) -> Result<()> {
        self.traced("probe trigger", async {
            let reason = match action {
                GuestAction::PowerOff => StopReason::Shutdown,
                GuestAction::Reboot => StopReason::Reboot,
                GuestAction::Panic => StopReason::GuestPanic,
                GuestAction::Crash => StopReason::Crash,
            };
            if self.exit_if(ExitStatus::new(reason), |s| s == State::Running) {
                Ok(())
            } else {
                let state = self.state();
                Err(Error::InvalidState {
                    operation: format!("make the guest {action:?}"),
                    state,
                })
            }
        })
        .await
    }
}
