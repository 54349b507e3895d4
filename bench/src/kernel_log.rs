//! Figures read from the guest kernel's console log: how long the kernel
//! took to unpack its initramfs (from "Trying to unpack rootfs image as
//! initramfs..." to "Freeing initrd memory", both lines of
//! `init/initramfs.c`), a phase that touches every page of the image and
//! so shows the cost of guest memory faults.

use std::time::Duration;

/// The line the kernel prints when it starts unpacking the initramfs.
pub const UNPACK_START: &str = "Trying to unpack rootfs image as initramfs";
/// The line the kernel prints once the initramfs is unpacked and freed.
pub const UNPACK_END: &str = "Freeing initrd memory";

/// The kernel timestamp of a `[   12.345678] text` line.
fn timestamp(line: &str) -> Option<Duration> {
    let inner = line.trim_start().strip_prefix('[')?;
    let (seconds, _) = inner.split_once(']')?;
    seconds
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Whether `line` is one the unpack time is read from (to keep only those).
pub fn is_unpack_line(line: &str) -> bool {
    line.contains(UNPACK_START) || line.contains(UNPACK_END)
}

/// The time the kernel spent unpacking its initramfs, from its log lines;
/// `None` when either line is missing or the clock went backwards.
pub fn unpack_time<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Duration> {
    let mut start = None;
    let mut end = None;
    for line in lines {
        if start.is_none() && line.contains(UNPACK_START) {
            start = timestamp(line);
        } else if end.is_none() && line.contains(UNPACK_END) {
            end = timestamp(line);
        }
    }
    end?.checked_sub(start?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_unpack_time() {
        let log = "[    3.983051] Trying to unpack rootfs image as initramfs...\n\
                   [    4.017183] platform rtc_cmos: registered\n\
                   [    4.507614] Freeing initrd memory: 6980K\n";
        let t = unpack_time(log.lines()).unwrap();
        assert_eq!(t.as_micros(), 524_563);
        assert!(is_unpack_line(log.lines().next().unwrap()));
        assert!(!is_unpack_line("[ 1.0] other"));
        assert_eq!(unpack_time(log.lines().take(2)), None, "no end line");
        assert_eq!(
            unpack_time([
                "[ 5.0] Trying to unpack rootfs image as initramfs",
                "[ 4.0] Freeing initrd memory"
            ]),
            None,
            "backwards"
        );
        assert_eq!(
            unpack_time(["garbage Trying to unpack rootfs image as initramfs"]),
            None
        );
    }
}
