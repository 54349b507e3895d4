//! The ACPI tables of a VM, written into guest memory at
//! [`crate::arch::layout::ACPI_ADDR`]: fixed hardware (FADT with PM1a and
//! GPE0, SCI on IRQ 9), MADT for the vCPUs, the pvpanic port, and a DSDT
//! whose `PCI0` root bridge declares every hot-pluggable slot
//! ([`crate::pci::slots::HOTPLUG`]) with the `\_GPE._E01` method of the
//! PCI hotplug register block.

use uvm_devices::acpi::pci_hotplug::hotplug_aml;
use uvm_devices::acpi::tables::{self, AcpiConfig};
use uvm_devices::legacy::pvpanic::PVPANIC_PORT;
use vm_memory::{Bytes, GuestAddress};

use crate::arch::layout;
use crate::error::VmmError;
use crate::memory::GuestMem;
use crate::pci::slots;

/// Builds the tables for `vcpu_count` vCPUs into `mem`; returns the RSDP's
/// guest address (for the boot protocol).
pub fn write(mem: &GuestMem, vcpu_count: u8) -> Result<u64, VmmError> {
    let mut acpi = AcpiConfig::new(vcpu_count, layout::PCI_MMIO32);
    acpi.pvpanic_port = Some(PVPANIC_PORT as u16);
    let hotplug: Vec<u8> = slots::HOTPLUG.collect();
    (acpi.root_bridge_aml, acpi.top_level_aml) = hotplug_aml(&hotplug);
    let image = tables::build(&acpi, layout::ACPI_ADDR, layout::ACPI_MAX)?;
    mem.write_slice(&image.bytes, GuestAddress(image.base))
        .map_err(|e| VmmError::Memory(e.to_string()))?;
    Ok(image.rsdp)
}
