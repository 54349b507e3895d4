//! Linux direct boot with the 64-bit boot protocol: the bzImage is loaded
//! with linux-loader at 1 MiB, `boot_params` (zero page) gets the setup
//! header, the command line, the initrd (at the top of low RAM), the e820
//! map and the RSDP address; the boot vCPU starts in long mode at the
//! kernel's 64-bit entry (`load address + 0x200`) with identity-mapped page
//! tables and `rsi` pointing at the zero page. (The ELF vmlinux's PVH entry
//! is not used.)

use std::fs::File;
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{KernelLoader, bzimage::BzImage, load_cmdline};
use vm_memory::{Bytes, GuestAddress};

use crate::arch::layout::{
    CMDLINE_ADDR, CMDLINE_MAX, EBDA_START, HIGH_RAM_START, HIMEM_START, ZERO_PAGE, ram_ranges,
};
use crate::error::VmmError;
use crate::memory::GuestMem;

/// What to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxBoot {
    /// The bzImage.
    pub kernel: PathBuf,
    /// The initial ramdisk, if any.
    pub initrd: Option<PathBuf>,
    /// The command line.
    pub cmdline: String,
}

const E820_RAM: u32 = 1;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// Offset of the 64-bit entry point from the protected-mode kernel's start.
const ENTRY_64_OFFSET: u64 = 0x200;

fn bad_kernel(path: &Path, detail: impl std::fmt::Display) -> VmmError {
    VmmError::BadKernel {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

fn add_e820(params: &mut boot_params, addr: u64, size: u64) -> Result<(), VmmError> {
    let i = usize::from(params.e820_entries);
    let slot = params
        .e820_table
        .get_mut(i)
        .ok_or_else(|| VmmError::Config("too many e820 entries".into()))?;
    *slot = boot_e820_entry {
        addr,
        size,
        r#type: E820_RAM,
    };
    params.e820_entries += 1;
    Ok(())
}

impl LinuxBoot {
    /// Loads everything into `mem` (of `mem_bytes`); returns the 64-bit entry point.
    pub fn load(&self, mem: &GuestMem, mem_bytes: u64, rsdp: u64) -> Result<u64, VmmError> {
        let mut kernel = File::open(&self.kernel).map_err(|source| VmmError::BootFile {
            what: "kernel",
            path: self.kernel.clone(),
            source,
        })?;
        let loaded = BzImage::load(mem, None, &mut kernel, Some(GuestAddress(HIMEM_START)))
            .map_err(|e| bad_kernel(&self.kernel, format!("not a loadable bzImage: {e}")))?;
        let hdr = loaded
            .setup_header
            .ok_or_else(|| bad_kernel(&self.kernel, "no setup header"))?;

        let mut cmdline = Cmdline::new(CMDLINE_MAX)
            .map_err(|e| VmmError::Config(format!("command line: {e}")))?;
        if !self.cmdline.is_empty() {
            cmdline
                .insert_str(&self.cmdline)
                .map_err(|e| VmmError::Config(format!("command line: {e}")))?;
        }
        load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &cmdline)
            .map_err(|e| VmmError::Config(format!("command line: {e}")))?;

        let mut params = boot_params {
            hdr,
            ..Default::default()
        };
        params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
        params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
        params.hdr.header = KERNEL_HDR_MAGIC;
        params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
        params.hdr.cmdline_size = self.cmdline.len() as u32 + 1;
        params.acpi_rsdp_addr = rsdp;

        let low_end = ram_ranges(mem_bytes)
            .first()
            .map(|(_, len)| *len)
            .unwrap_or(0);
        if let Some(path) = &self.initrd {
            // Streamed from the file into guest memory: a heap buffer of the
            // initrd's size would stay with the process (glibc raises its
            // mmap threshold after freeing one), tens of MiB per boot.
            let boot_file = |source| VmmError::BootFile {
                what: "initrd",
                path: path.clone(),
                source,
            };
            let mut file = File::open(path).map_err(boot_file)?;
            let size = file.metadata().map_err(boot_file)?.len();
            let max = u64::from(params.hdr.initrd_addr_max).min(low_end.saturating_sub(1));
            let addr = (max + 1)
                .checked_sub(size)
                .map(|a| a & !0xfff)
                .filter(|a| *a >= loaded.kernel_end)
                .ok_or_else(|| {
                    VmmError::Config(format!(
                        "the initrd ({size} bytes) does not fit in guest memory above the kernel"
                    ))
                })?;
            let len = usize::try_from(size)
                .map_err(|_| VmmError::Config(format!("an initrd of {size} bytes")))?;
            mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
                .map_err(|e| VmmError::Memory(format!("loading the initrd: {e}")))?;
            params.hdr.ramdisk_image = addr as u32;
            params.hdr.ramdisk_size = size as u32;
        }

        add_e820(&mut params, 0, EBDA_START)?;
        add_e820(
            &mut params,
            HIMEM_START,
            low_end.saturating_sub(HIMEM_START),
        )?;
        for (start, len) in ram_ranges(mem_bytes) {
            if start >= HIGH_RAM_START {
                add_e820(&mut params, start, len)?;
            }
        }
        mem.write_obj(params, GuestAddress(ZERO_PAGE))
            .map_err(|e| VmmError::Memory(e.to_string()))?;
        Ok(loaded.kernel_load.0 + ENTRY_64_OFFSET)
    }
}
