#!/bin/sh
# Installed in the test guest as /etc/acpi/PWRF/00000080: busybox acpid runs
# it when the "Power Button" input device (the `button` module, read through
# `evdev`) reports KEY_POWER, which is how a VMM's graceful stop asks the
# guest to power off. It powers off through ACPI S5 (StopReason Shutdown).
echo "uvm-init: ACPI power button: powering off" >/dev/console
sync
poweroff -f
