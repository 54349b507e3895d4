//! ACPI with fixed hardware (not hardware-reduced): the power-management
//! register block ([`pm`]: PM1a event/control, GPE0, reset register) and the
//! tables that describe it ([`tables`]: RSDP, XSDT, FADT, FACS, MADT, DSDT,
//! optional MCFG).
//!
//! Guest power-off arrives as S5 on PM1a control, reboot through the FADT
//! reset register; a graceful stop raises the fixed power-button event
//! ([`pm::PmDevice::press_power_button`]). PCI hotplug ([`pci_hotplug`])
//! raises a GPE ([`pm::PmDevice::raise_gpe`]) whose DSDT methods come in
//! through [`tables::AcpiConfig::top_level_aml`] /
//! [`tables::AcpiConfig::root_bridge_aml`].

pub mod pci_hotplug;
pub mod pm;
pub mod tables;
