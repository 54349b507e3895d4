//! ACPI tables and the fixed-hardware power-management block: not written yet.
